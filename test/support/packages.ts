/**
 * Helpers for the package and upgrade tests: a manager key, a small fake project whose
 * bin/holdfast.js does one thing per version (report healthy and exit, exit at once, hang, or
 * switch and ask for a restart), and a signed hostile tarball made with our own tar writer.
 */
import { mkdirSync, readdirSync, writeFileSync, existsSync, lstatSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { signManifest, type SignedManifest } from '../../src/deploy/package-manifest.js'
import { writeTar, type TarSource } from '../../src/deploy/tar-writer.js'

export interface Manager { privateKey: PrivateKey, peerId: string }

export async function newManager (): Promise<Manager> {
  const privateKey = await generateKeyPair('Ed25519')
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString() }
}

export type Behaviour = 'healthy-exit' | 'exit-3' | 'hang' | 'switch-to-next'

/**
 * The script of one version. Every run appends "<version>\n" to the file named by its first
 * argument, so a test sees which versions ran, in order.
 */
function binScript (version: string, behaviour: Behaviour, next?: string): string {
  const report = "if (process.env.HOLDFAST_HEALTH_FILE) writeFileSync(process.env.HOLDFAST_HEALTH_FILE, JSON.stringify({ pid: process.pid }))"
  const body: Record<Behaviour, string> = {
    'healthy-exit': `${report}\nsetTimeout(() => process.exit(0), 50)`,
    'exit-3': 'process.exit(3)',
    hang: 'setInterval(() => {}, 1000)',
    'switch-to-next': `${report}\nconst m = await import(process.env.HOLDFAST_TEST_SWITCH_MODULE)\nawait m.switchCurrent(process.env.HOLDFAST_TEST_INSTALL_ROOT, ${JSON.stringify(next ?? '')})\nprocess.exit(75)`
  }
  return `#!/usr/bin/env node\nimport { appendFileSync, writeFileSync } from 'node:fs'\nappendFileSync(process.argv[2], ${JSON.stringify(version + '\n')})\n${body[behaviour]}\n`
}

/** A project dir with package.json and bin/holdfast.js (no dist, no dependencies). */
export function fakeProject (root: string, version: string, behaviour: Behaviour, next?: string): string {
  const dir = join(root, `project-${version}`)
  mkdirSync(join(dir, 'bin'), { recursive: true })
  mkdirSync(join(dir, 'dist', 'src', 'deep', 'er'), { recursive: true })
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'holdfast', version, type: 'module' }) + '\n')
  writeFileSync(join(dir, 'bin', 'holdfast.js'), binScript(version, behaviour, next), { mode: 0o755 })
  // a name past ustar's 100 bytes, so the pax path is exercised
  writeFileSync(join(dir, 'dist', 'src', 'deep', 'er', 'x'.repeat(120) + '.js'), `export const v = ${JSON.stringify(version)}\n`)
  return dir
}

/** A gzipped tar of `entries`, with a manifest signed by `manager` that matches it exactly. */
export async function signedTarball (entries: TarSource[], version: string, manager: Manager): Promise<{ bytes: Buffer, signed: SignedManifest }> {
  const chunks: Buffer[] = []
  for await (const c of writeTar(entries)) chunks.push(c)
  const bytes = gzipSync(Buffer.concat(chunks))
  const signed = await signManifest({ format: 1, name: 'holdfast', version, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.byteLength, builtAt: new Date(0).toISOString() }, manager.privateKey, manager.peerId)
  return { bytes, signed }
}

export const file = (path: string, text: string): TarSource => ({ path, type: 'file', mode: 0o644, mtime: 0, size: Buffer.byteLength(text), body: async function * () { yield Buffer.from(text) } })
export const BIN = file('bin/holdfast.js', 'process.exit(0)\n')

/** A source that yields `bytes` in pieces of `piece` bytes. */
export async function * chunked (bytes: Uint8Array, piece = 4096): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < bytes.byteLength; off += piece) yield bytes.subarray(off, off + piece)
}

/** Everything under `dir`, as sorted relative paths (to show nothing was left behind). */
export function listTree (dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return []
  const out: string[] = []
  for (const name of readdirSync(dir).sort()) {
    const rel = prefix === '' ? name : `${prefix}/${name}`
    out.push(rel)
    const st = lstatSync(join(dir, name))
    if (st.isDirectory()) out.push(...listTree(join(dir, name), rel))
  }
  return out
}
