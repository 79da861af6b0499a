/**
 * A package's manifest and its signature. The manifest names the tarball by SHA-256 and size;
 * the manager signs it with its libp2p Ed25519 key, so a node that pinned that manager can check
 * a package before a byte of it is stored, unpacked or run (docs/architecture.md, "Packages and
 * upgrades").
 */
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { HoldfastError } from '../util/errors.js'

export interface PackageManifest {
  format: 1
  name: 'holdfast'
  version: string
  /** Hex SHA-256 of the gzipped tarball, as sent. */
  sha256: string
  /** Bytes of the gzipped tarball. */
  size: number
  /** ISO time the package was built. */
  builtAt: string
}

export interface SignedManifest {
  manifest: PackageManifest
  /** The manager's peer id (an Ed25519 peer id carries its public key). */
  signer: string
  /** Base64 Ed25519 signature over canonicalManifestBytes(manifest). */
  signature: string
}

/**
 * A version is a directory name on every node and part of paths in the state file: letters,
 * digits, '.', '_', '+', '-', starting with a letter or digit, at most 64 characters. No '/', no
 * '..', and never ending in '.partial' (the name of an unfinished unpack).
 */
export function isSafeVersion (version: unknown): version is string {
  return typeof version === 'string' &&
    /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(version) &&
    !version.includes('..') &&
    !version.endsWith('.partial')
}

const MANIFEST_KEYS = ['format', 'name', 'version', 'sha256', 'size', 'builtAt'] as const
/** Far above any build of ours; a bound so a size field cannot be used to ask for terabytes. */
const MAX_PACKAGE_SIZE = 4 * 1024 * 1024 * 1024

/** Checks every field; a manifest with a key we do not know is refused (the signature would not cover its meaning). */
export function checkManifest (value: unknown): PackageManifest {
  const bad = (why: string): never => { throw new HoldfastError('PACKAGE_INVALID', `package manifest: ${why}`) }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('not an object')
  const m = value as Record<string, unknown>
  for (const key of Object.keys(m)) if (!(MANIFEST_KEYS as readonly string[]).includes(key)) bad(`unknown key ${JSON.stringify(key).slice(0, 80)}`)
  if (m.format !== 1) bad('format is not 1')
  if (m.name !== 'holdfast') bad('name is not holdfast')
  if (!isSafeVersion(m.version)) bad(`version ${JSON.stringify(m.version)?.slice(0, 80) ?? 'missing'} is not a safe name`)
  if (typeof m.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.sha256)) bad('sha256 is not 64 lower-case hex digits')
  if (typeof m.size !== 'number' || !Number.isSafeInteger(m.size) || m.size <= 0 || m.size > MAX_PACKAGE_SIZE) bad('size is not a positive integer within 4 GiB')
  if (typeof m.builtAt !== 'string' || m.builtAt.length > 40 || Number.isNaN(Date.parse(m.builtAt))) bad('builtAt is not an ISO time')
  return { format: 1, name: 'holdfast', version: m.version as string, sha256: m.sha256 as string, size: m.size as number, builtAt: m.builtAt as string }
}

/**
 * The bytes that are signed: JSON with the keys in one fixed order and no whitespace, so the
 * signer and every verifier hash the same bytes whatever order a transport put the keys in.
 */
export function canonicalManifestBytes (manifest: PackageManifest): Uint8Array {
  const m = checkManifest(manifest)
  return new TextEncoder().encode(JSON.stringify({ format: m.format, name: m.name, version: m.version, sha256: m.sha256, size: m.size, builtAt: m.builtAt }))
}

export async function signManifest (manifest: PackageManifest, privateKey: PrivateKey, signer: string): Promise<SignedManifest> {
  if (privateKey.type !== 'Ed25519') throw new HoldfastError('PACKAGE_SIGNATURE_INVALID', `packages are signed with an Ed25519 key, not ${privateKey.type}`)
  // A signer field that is not the key's own peer id would make every node refuse the package;
  // better to say so here, on the manager, than on each node.
  if (peerIdFromPrivateKey(privateKey).toString() !== signer) throw new HoldfastError('PACKAGE_SIGNATURE_INVALID', `signer ${signer} is not the peer id of the signing key`)
  const signature = await privateKey.sign(canonicalManifestBytes(manifest))
  return { manifest: checkManifest(manifest), signer, signature: Buffer.from(signature).toString('base64') }
}

/**
 * Checks a signed manifest and returns its manifest. Order: shape, then the signer is pinned,
 * then the signature (cheap refusals first; nothing of the package is looked at here).
 */
export async function verifyManifest (signed: SignedManifest, pinnedManagers: string[]): Promise<PackageManifest> {
  const invalid = (why: string): never => { throw new HoldfastError('PACKAGE_SIGNATURE_INVALID', why) }
  if (typeof signed !== 'object' || signed === null) throw new HoldfastError('PACKAGE_INVALID', 'signed manifest is not an object')
  const manifest = checkManifest(signed.manifest)
  if (typeof signed.signer !== 'string' || signed.signer.length > 128) invalid('signer is not a peer id')
  if (typeof signed.signature !== 'string' || signed.signature.length > 256 || !/^[A-Za-z0-9+/]+={0,2}$/.test(signed.signature)) invalid('signature is not base64')
  let signerId
  try { signerId = peerIdFromString(signed.signer) } catch { return invalid(`signer ${signed.signer.slice(0, 80)} is not a peer id`) }
  const pinned = new Set<string>()
  for (const p of pinnedManagers) {
    try { pinned.add(peerIdFromString(p).toString()) } catch { /* a malformed pin matches nothing */ }
  }
  if (!pinned.has(signerId.toString())) invalid(`signer ${signerId.toString()} is not a pinned manager`)
  if (signerId.type !== 'Ed25519') return invalid(`signer ${signerId.toString()} is not an Ed25519 peer id`)
  const sig = Buffer.from(signed.signature, 'base64')
  if (sig.byteLength !== 64) invalid('signature is not 64 bytes')
  let ok = false
  try { ok = await signerId.publicKey.verify(canonicalManifestBytes(manifest), sig) } catch { ok = false }
  if (!ok) invalid(`signature of ${signerId.toString()} does not verify`)
  return manifest
}
