/**
 * PLACEHOLDER for the package module (signed packages, install, atomic switch, rollback),
 * which another change provides with exactly these signatures. Every function throws
 * NOT_IMPLEMENTED so the deploy protocol compiles and fails loudly until the real module lands.
 * No logic belongs here.
 */
import type { PrivateKey } from '@libp2p/interface'
import { HoldfastError } from '../util/errors.js'

export interface PackageManifest { format: 1, name: 'holdfast', version: string, sha256: string, size: number, builtAt: string }
export interface SignedManifest { manifest: PackageManifest, signer: string /* manager peer id */, signature: string /* base64 */ }

function notYet (what: string): never {
  throw new HoldfastError('NOT_IMPLEMENTED', `${what}: the package module is not in this build`)
}

export async function signManifest (_manifest: PackageManifest, _privateKey: PrivateKey, _signer: string): Promise<SignedManifest> { notYet('signManifest') }
export async function verifyManifest (_signed: SignedManifest, _pinnedManagers: string[]): Promise<PackageManifest> { notYet('verifyManifest') }
export async function buildPackage (_opts: { projectDir: string, outDir: string, privateKey: PrivateKey, signer: string, version?: string, signal?: AbortSignal, onProgress?: (p: { bytes: number }) => void }): Promise<{ tarball: string, signed: SignedManifest }> { notYet('buildPackage') }
export async function installPackage (_opts: { installRoot: string, source: AsyncIterable<Uint8Array>, signed: SignedManifest, pinnedManagers: string[], maxBytes: number, signal?: AbortSignal, onProgress?: (p: { bytes: number, total: number }) => void }): Promise<{ version: string, dir: string }> { notYet('installPackage') }
export async function switchCurrent (_installRoot: string, _version: string): Promise<{ previous?: string }> { notYet('switchCurrent') }
export async function rollback (_installRoot: string): Promise<string | undefined> { notYet('rollback') }
export function currentVersion (_installRoot: string): string | undefined { notYet('currentVersion') }
