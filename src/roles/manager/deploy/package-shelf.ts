/**
 * The packages a manager can offer: `<dataDir>/packages/<version>.json` names a tarball beside
 * it and holds its signed manifest. Built with the package module's buildPackage from the
 * manager's own installation (so the version it runs can always be offered), signed with the
 * manager's key, which every node pinned at join.
 */
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { PrivateKey } from '@libp2p/interface'
import { buildPackage, isSafeVersion, signManifest, type SignedManifest } from '../../../deploy/package.js'
import { decodeSignedManifest, DEPLOY_LIMITS } from '../../../protocols/deploy.js'
import { HoldfastError, describeError } from '../../../util/errors.js'
import { writeFileDurable } from '../../../util/durable-file.js'
import { HOLDFAST_VERSION } from '../../../version.js'

export interface ShelvedPackage { tarball: string, signed: SignedManifest }

/** An entry file is a manifest and a file name: a few KiB at most. */
const MAX_ENTRY_BYTES = 64 * 1024
const VERSION_FILE = /^([0-9A-Za-z][0-9A-Za-z.+-]{0,63})\.json$/

/** The project this manager runs from (dist/src/roles/manager/deploy/ → the root). */
const PROJECT_DIR = fileURLToPath(new URL('../../../../../', import.meta.url))

export class PackageShelf {
  readonly dir: string

  constructor (dataDir: string, private readonly signer: { privateKey: PrivateKey, peerId: string }) {
    this.dir = join(dataDir, 'packages')
  }

  get (version: string): ShelvedPackage | undefined {
    const entry = join(this.dir, `${version}.json`)
    if (!VERSION_FILE.test(`${version}.json`) || !existsSync(entry)) return undefined
    let raw: unknown
    try {
      const text = readFileSync(entry, 'utf8')
      if (text.length > MAX_ENTRY_BYTES) throw new Error(`larger than ${MAX_ENTRY_BYTES} bytes`)
      raw = JSON.parse(text)
    } catch (err) {
      throw new HoldfastError('DEPLOY_FAILED', `package entry ${entry} cannot be read: ${describeError(err)}`)
    }
    const r = raw as Record<string, unknown>
    if (typeof r?.tarball !== 'string' || basename(r.tarball) !== r.tarball) throw new HoldfastError('DEPLOY_FAILED', `package entry ${entry} names no tarball beside it`)
    const signed = decodeSignedManifest(r.signed)
    if (signed.manifest.version !== version) throw new HoldfastError('DEPLOY_FAILED', `package entry ${entry} holds version ${signed.manifest.version}`)
    return { tarball: join(this.dir, r.tarball), signed }
  }

  /** The newest shelved package (by build time), if any. */
  latest (): ShelvedPackage | undefined {
    let best: ShelvedPackage | undefined
    let names: string[] = []
    try { names = readdirSync(this.dir) } catch { return undefined }
    for (const name of names) {
      const m = VERSION_FILE.exec(name)
      if (m === null) continue
      try {
        const p = this.get(m[1])
        if (p !== undefined && (best === undefined || p.signed.manifest.builtAt > best.signed.manifest.builtAt)) best = p
      } catch {}
    }
    return best
  }

  /** The package for `version`; the manager's own version is built on demand. */
  async forVersion (version: string, signal: AbortSignal): Promise<ShelvedPackage> {
    const shelved = this.get(version)
    if (shelved !== undefined) return shelved
    if (version !== HOLDFAST_VERSION) throw new HoldfastError('DEPLOY_FAILED', `no package for version ${version} on the shelf (${this.dir}); this manager can build only its own version, ${HOLDFAST_VERSION}`)
    return await this.build(signal)
  }

  /** Builds and signs the manager's own version, and shelves it. */
  async build (signal?: AbortSignal): Promise<ShelvedPackage> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const { tarball, signed } = await buildPackage({ projectDir: PROJECT_DIR, outDir: this.dir, privateKey: this.signer.privateKey, signer: this.signer.peerId, version: HOLDFAST_VERSION, signal })
    writeFileDurable(join(this.dir, `${signed.manifest.version}.json`), JSON.stringify({ tarball: basename(tarball), signed }, null, 2) + '\n', 0o600)
    return { tarball: join(this.dir, basename(tarball)), signed }
  }

  /**
   * `holdfast deploy package add TARBALL --version V`: shelves a package built elsewhere (by
   * buildPackage, from another checkout) as version V, signed here with the manager's key. The
   * admin vouches for the bytes by adding them; the node still checks everything it can
   * (hash, size, paths, bin/holdfast.js) and the new version must report healthy. A version
   * already on the shelf is refused, so what was offered under a name stays what it names.
   */
  async add (source: string, version: string, signal?: AbortSignal): Promise<ShelvedPackage> {
    if (!isSafeVersion(version) || !VERSION_FILE.test(`${version}.json`)) throw new HoldfastError('DEPLOY_FAILED', `${JSON.stringify(version).slice(0, 80)} is not a version name`)
    if (this.get(version) !== undefined) throw new HoldfastError('DEPLOY_FAILED', `version ${version} is on the shelf already (${this.dir})`)
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const name = `holdfast-${version}.tgz`
    const tmp = join(this.dir, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
    const hash = createHash('sha256')
    let size = 0
    const out = await open(tmp, 'wx', 0o600)
    try {
      try {
        for await (const chunk of createReadStream(source, { highWaterMark: 256 * 1024, signal }) as AsyncIterable<Buffer>) {
          size += chunk.byteLength
          if (size > DEPLOY_LIMITS.maxPackageBytes) throw new HoldfastError('PACKAGE_TOO_LARGE', `${source} is over the ${DEPLOY_LIMITS.maxPackageBytes} bytes a host takes`)
          hash.update(chunk)
          let off = 0
          while (off < chunk.byteLength) off += (await out.write(chunk, off)).bytesWritten
        }
        await out.sync()
      } finally {
        await out.close()
      }
      if (size === 0) throw new HoldfastError('PACKAGE_INVALID', `${source} is empty`)
      renameSync(tmp, join(this.dir, name))
    } catch (err) {
      try { unlinkSync(tmp) } catch {}
      if (err instanceof HoldfastError) throw err
      throw new HoldfastError('DEPLOY_FAILED', `cannot shelve ${source}: ${describeError(err)}`, {}, { cause: err })
    }
    // builtAt is when it was shelved: the newest package is what a bare node is offered
    const signed = await signManifest({ format: 1, name: 'holdfast', version, sha256: hash.digest('hex'), size, builtAt: new Date().toISOString() }, this.signer.privateKey, this.signer.peerId)
    writeFileDurable(join(this.dir, `${version}.json`), JSON.stringify({ tarball: name, signed }, null, 2) + '\n', 0o600)
    return { tarball: join(this.dir, name), signed }
  }

  bytes (pkg: ShelvedPackage): AsyncIterable<Uint8Array> {
    return createReadStream(pkg.tarball, { highWaterMark: 256 * 1024 })
  }
}
