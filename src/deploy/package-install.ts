/**
 * Installs a package on a node: verify, receive, check, unpack, rename into place. The order is
 * the security argument (docs/architecture.md, "Packages and upgrades"):
 *   1. the signed manifest is verified against the pinned managers: nothing is read before;
 *   2. its size is checked against the node's cap: nothing is stored before;
 *   3. the tarball is streamed to a temporary file under the install root, cut off at the
 *      first byte past the signed size, hashed as it arrives;
 *   4. size and SHA-256 must match the manifest: nothing is unpacked before;
 *   5. it is unpacked into versions/<version>.partial by the strict extractor (tar-extract.ts),
 *      each file fsync'd, and only then renamed to versions/<version>.
 * A refusal at any step removes what that step made; `current` is never touched here (switching
 * is version-switch.ts), so a refused package changes nothing that runs.
 */
import { createReadStream, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, unlinkSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { createGunzip } from 'node:zlib'
import { pipeline } from 'node:stream/promises'
import { fsyncDir, writeFileDurable } from '../util/durable-file.js'
import { HoldfastError } from '../util/errors.js'
import { verifyManifest, type SignedManifest } from './package-manifest.js'
import { readTar } from './tar-reader.js'
import { extractTar } from './tar-extract.js'
import { VERSIONS_DIR, versionDir } from './version-switch.js'
import { recordEvent } from './upgrade-state.js'

export interface InstallOptions {
  installRoot: string
  source: AsyncIterable<Uint8Array>
  signed: SignedManifest
  pinnedManagers: string[]
  /** The most a node accepts for one package, whatever the manifest says. */
  maxBytes: number
  signal?: AbortSignal
  onProgress?: (p: { bytes: number, total: number }) => void
  /** Bound on the unpacked size; default 16 × the package's size (JavaScript gzips about 4-8×). */
  maxUnpackedBytes?: number
}

/** Written into each installed version: what it was installed from (read by a repeated install). */
export const INSTALLED_MANIFEST = '.holdfast-package.json'
const TMP_DIR = 'tmp'

export async function installPackage (opts: InstallOptions): Promise<{ version: string, dir: string }> {
  const manifest = await verifyManifest(opts.signed, opts.pinnedManagers)
  if (manifest.size > opts.maxBytes) {
    throw new HoldfastError('PACKAGE_TOO_LARGE', `package ${manifest.version} is ${manifest.size} bytes, over this node's cap of ${opts.maxBytes}`, { size: manifest.size, maxBytes: opts.maxBytes })
  }
  const { version } = manifest
  const dir = versionDir(opts.installRoot, version)
  const already = installedManifestOf(dir)
  if (already !== undefined) {
    // the same package again (a retried deploy) is done; another one under the same name is refused
    if (already === manifest.sha256) return { version, dir }
    throw new HoldfastError('PACKAGE_INVALID', `version ${version} is already installed from another package (sha256 ${already.slice(0, 12)}…)`)
  }
  opts.signal?.throwIfAborted()
  mkdirSync(join(opts.installRoot, VERSIONS_DIR), { recursive: true, mode: 0o755 })
  mkdirSync(join(opts.installRoot, TMP_DIR), { recursive: true, mode: 0o700 })
  const tmp = join(opts.installRoot, TMP_DIR, `${version}.${process.pid}-${randomBytes(4).toString('hex')}.tgz`)
  const partial = `${dir}.partial`
  try {
    await receive(opts, tmp, manifest.size, manifest.sha256)
    // a .partial left by a crash during an earlier unpack is never trusted: start again
    rmSync(partial, { recursive: true, force: true })
    mkdirSync(partial, { mode: 0o755 })
    try {
      await pipeline(createReadStream(tmp), createGunzip(), async (plain: AsyncIterable<Uint8Array>) => {
        await extractTar(readTar(plain), partial, {
          maxUnpackedBytes: opts.maxUnpackedBytes ?? manifest.size * 16,
          ...(opts.signal !== undefined ? { signal: opts.signal } : {})
        })
      }, ...(opts.signal !== undefined ? [{ signal: opts.signal }] : []))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'Z_DATA_ERROR' || (err as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') {
        throw new HoldfastError('PACKAGE_INVALID', `package ${version} is not valid gzip`, {}, { cause: err })
      }
      throw err
    }
    let bin = false
    try { bin = lstatSync(join(partial, 'bin', 'holdfast.js')).isFile() } catch {}
    if (!bin) throw new HoldfastError('PACKAGE_INVALID', `package ${version} has no bin/holdfast.js`)
    writeFileDurable(join(partial, INSTALLED_MANIFEST), JSON.stringify(opts.signed, null, 2) + '\n', 0o644)
    fsyncDir(partial)
    renameSync(partial, dir)
    fsyncDir(join(opts.installRoot, VERSIONS_DIR))
  } catch (err) {
    rmSync(partial, { recursive: true, force: true })
    throw err
  } finally {
    try { unlinkSync(tmp) } catch {}
  }
  recordEvent(opts.installRoot, { at: new Date().toISOString(), event: 'installed', version })
  return { version, dir }
}

/** Streams the tarball to `tmp`, refusing it the moment it passes `size`; checks length and hash. */
async function receive (opts: InstallOptions, tmp: string, size: number, sha256: string): Promise<void> {
  const hash = createHash('sha256')
  let bytes = 0
  const handle = await open(tmp, 'wx', 0o600)
  try {
    for await (const chunk of opts.source) {
      opts.signal?.throwIfAborted()
      bytes += chunk.byteLength
      if (bytes > size) throw new HoldfastError('PACKAGE_TOO_LARGE', `package is longer than its signed size of ${size} bytes`, { size })
      hash.update(chunk)
      let off = 0
      while (off < chunk.byteLength) off += (await handle.write(chunk, off)).bytesWritten
      opts.onProgress?.({ bytes, total: size })
    }
    opts.signal?.throwIfAborted()
    if (bytes < size) throw new HoldfastError('PACKAGE_TRUNCATED', `package ended after ${bytes} of its ${size} bytes`, { bytes, size })
    if (hash.digest('hex') !== sha256) throw new HoldfastError('PACKAGE_HASH_MISMATCH', 'package SHA-256 does not match its signed manifest')
    await handle.sync()
  } finally {
    await handle.close()
  }
}

function installedManifestOf (dir: string): string | undefined {
  let text: string
  try { text = readFileSync(join(dir, INSTALLED_MANIFEST), 'utf8') } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      // a directory without the record was not made by installPackage: do not overwrite it
      let exists = false
      try { lstatSync(dir); exists = true } catch {}
      if (exists) throw new HoldfastError('PACKAGE_INVALID', `${dir} exists but was not installed from a package`)
      return undefined
    }
    throw err
  }
  const sha = (JSON.parse(text) as { manifest?: { sha256?: unknown } }).manifest?.sha256
  return typeof sha === 'string' ? sha : ''
}
