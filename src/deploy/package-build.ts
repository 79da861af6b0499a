/**
 * Builds a package from a project checkout: a gzipped tar of package.json, README.md, bin/,
 * dist/src/, packaging/systemd/ and the production dependencies (node_modules, as
 * package-lock.json marks them: not `dev`), plus its manifest signed with the manager's key. Nothing is installed or downloaded: the
 * dependencies are taken from the node_modules already there, so a manager can package the
 * version it runs. Paths in the archive are relative to the project (no `package/` prefix):
 * the tarball unpacks straight into `versions/<version>/`.
 */
import { createReadStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, renameSync, unlinkSync, type Stats } from 'node:fs'
import { open } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { join, posix } from 'node:path'
import { createGzip } from 'node:zlib'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { PrivateKey } from '@libp2p/interface'
import { writeFileDurable } from '../util/durable-file.js'
import { HoldfastError } from '../util/errors.js'
import { isSafeVersion, signManifest, type SignedManifest } from './package-manifest.js'
import { writeTar, type TarSource } from './tar-writer.js'

export interface BuildOptions {
  projectDir: string
  outDir: string
  privateKey: PrivateKey
  signer: string
  /** Defaults to package.json's version. */
  version?: string
  signal?: AbortSignal
  onProgress?: (p: { bytes: number }) => void
  /** For builtAt (tests pin it). */
  now?: () => number
}

/** The top-level parts of a project that run: everything else (src, test, docs) stays behind. */
export const TOP_LEVEL = ['package.json', 'README.md', 'bin', 'dist/src', 'packaging/systemd']

/** node_modules/<pkg> paths of the production dependencies, from the lockfile (v2/v3 `packages`). */
export function productionDependencies (projectDir: string): string[] {
  let lock: { packages?: Record<string, { dev?: boolean, link?: boolean, optional?: boolean }> }
  try {
    lock = JSON.parse(readFileSync(join(projectDir, 'package-lock.json'), 'utf8')) as typeof lock
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw new HoldfastError('PACKAGE_INVALID', `${join(projectDir, 'package-lock.json')} cannot be read`, {}, { cause: err })
  }
  const out: string[] = []
  for (const [path, info] of Object.entries(lock.packages ?? {})) {
    if (!path.startsWith('node_modules/') || info.dev === true || info.link === true) continue
    // an optional dependency not installed on this platform is simply absent
    try { lstatSync(join(projectDir, path)) } catch { if (info.optional === true) continue; throw new HoldfastError('PACKAGE_INVALID', `production dependency ${path} is missing (run npm ci)`) }
    out.push(path)
  }
  return out.sort()
}

/**
 * Every file, directory and link under `rel`, depth first, in name order. `skipNested` leaves
 * out a package's own node_modules: the lockfile lists the production ones among them
 * separately, and the dev ones must stay out.
 */
function * walk (projectDir: string, rel: string, skipNested: boolean, mtime: number): Generator<TarSource> {
  const abs = join(projectDir, rel)
  let st: Stats
  try { st = lstatSync(abs) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  if (st.isSymbolicLink()) {
    const target = readlinkSync(abs)
    const resolved = posix.normalize(posix.join(posix.dirname(rel), target))
    if (target.startsWith('/') || resolved === '..' || resolved.startsWith('../')) {
      throw new HoldfastError('PACKAGE_INVALID', `${rel} links outside the project (${target}); a node would refuse the package`)
    }
    yield { path: rel, type: 'symlink', mode: 0o777, mtime, linkname: target }
    return
  }
  if (st.isDirectory()) {
    yield { path: rel, type: 'directory', mode: 0o755, mtime }
    for (const name of readdirSync(abs).sort()) {
      if (skipNested && name === 'node_modules') continue
      yield * walk(projectDir, `${rel}/${name}`, skipNested, mtime)
    }
    return
  }
  if (st.isFile()) {
    const size = st.size
    yield { path: rel, type: 'file', mode: (st.mode & 0o111) !== 0 ? 0o755 : 0o644, mtime, size, body: () => createReadStream(abs) }
  }
  // sockets, fifos and devices in a project tree are not part of a build
}

function * sources (projectDir: string, mtime: number): Generator<TarSource> {
  for (const top of TOP_LEVEL) {
    if (top.includes('/') && existsSync(join(projectDir, top))) yield { path: top.split('/')[0] as string, type: 'directory', mode: 0o755, mtime }
    yield * walk(projectDir, top, false, mtime)
  }
  const deps = productionDependencies(projectDir)
  if (deps.length > 0) yield { path: 'node_modules', type: 'directory', mode: 0o755, mtime }
  for (const dep of deps) {
    // scoped packages (@scope/name) and nested ones need their parents as entries too
    const parts = dep.split('/')
    for (let i = 2; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/')
      if (parent.endsWith('/node_modules') || parts[i - 1]?.startsWith('@') === true) yield { path: parent, type: 'directory', mode: 0o755, mtime }
    }
    yield * walk(projectDir, dep, true, mtime)
  }
}

export async function buildPackage (opts: BuildOptions): Promise<{ tarball: string, signed: SignedManifest }> {
  const version = opts.version ?? (JSON.parse(readFileSync(join(opts.projectDir, 'package.json'), 'utf8')) as { version?: unknown }).version
  if (!isSafeVersion(version)) throw new HoldfastError('PACKAGE_INVALID', `version ${JSON.stringify(version)} is not a safe name`)
  const now = opts.now?.() ?? Date.now()
  const mtime = Math.floor(now / 1000)
  const tarball = join(opts.outDir, `holdfast-${version}.tgz`)
  const tmp = `${tarball}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  const hash = createHash('sha256')
  let bytes = 0
  const seen = new Set<string>()
  // a directory named twice (a scope shared by two packages) is written once
  const unique = function * (): Generator<TarSource> {
    for (const s of sources(opts.projectDir, mtime)) {
      if (seen.has(s.path)) continue
      seen.add(s.path)
      yield s
    }
  }
  const handle = await open(tmp, 'wx', 0o644)
  try {
    try {
      // pipeline, not pipe: an error in any stage (a file that changed size, an abort) fails the build
      await pipeline(Readable.from(writeTar(unique(), opts.signal)), createGzip({ level: 6 }), async (gz: AsyncIterable<Buffer>) => {
        for await (const chunk of gz) {
          hash.update(chunk)
          let off = 0
          while (off < chunk.byteLength) off += (await handle.write(chunk, off)).bytesWritten
          bytes += chunk.byteLength
          opts.onProgress?.({ bytes })
        }
      }, ...(opts.signal !== undefined ? [{ signal: opts.signal }] : []))
      await handle.sync()
    } finally {
      await handle.close()
    }
    renameSync(tmp, tarball)
  } catch (err) {
    try { unlinkSync(tmp) } catch {}
    throw err
  }
  const signed = await signManifest({ format: 1, name: 'holdfast', version, sha256: hash.digest('hex'), size: bytes, builtAt: new Date(now).toISOString() }, opts.privateKey, opts.signer)
  writeFileDurable(join(opts.outDir, `holdfast-${version}.manifest.json`), JSON.stringify(signed, null, 2) + '\n', 0o644)
  return { tarball, signed }
}
