/**
 * Restores that fail or cannot fit, on real files: a push (/holdfast/restore/1 between real
 * libp2p nodes on 127.0.0.1) cut part way leaves no label directory; --overwrite swaps the
 * whole label; a push or a restore on the manager host that cannot fit is refused before
 * anything is written; the restore writer with overwrite never replaces a directory and
 * never writes through a link.
 */
import { strict as assert } from 'node:assert'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { RestoreClient, RestoreService, type RestoreHeader, type RestorePushSource, type RestoreTarget, type RestoreWriter } from '../../src/protocols/restore.js'
import { openRestoreDir, RestoreSink } from '../../src/restore-writer/restore-sink.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { createLogger } from '../../src/util/log.js'
import { PackStore } from '../../src/store/core/packs.js'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { restoreSnapshot } from '../../src/store/restore.js'
import { seededBytes } from '../support/trees.js'

const MTIME = 1_700_000_000_123_456_000n
const dirs: string[] = []

function newDir (): string {
  const d = mkdtempSync(join(tmpdir(), 'holdfast-restore-atomic-'))
  dirs.push(d)
  return d
}

async function thrown (fn: () => Promise<unknown>): Promise<unknown> {
  try { await fn() } catch (err) { return err }
  assert.fail('expected a rejection, but the call succeeded')
}

async function waitFor (what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

function fileEntry (path: string, content: Buffer, chunkSize = 64 * 1024): { entry: StagedEntry, chunks: Array<{ id: Uint8Array, plain: Buffer }> } {
  const chunks: Array<{ id: Uint8Array, plain: Buffer }> = []
  for (let off = 0; off < content.byteLength; off += chunkSize) {
    const plain = content.subarray(off, off + chunkSize)
    chunks.push({ id: chunkId(plain), plain })
  }
  const entry: StagedEntry = { folder: 'home', path: Buffer.from(path), type: 'file', mode: 0o100640, mtimeNs: MTIME, size: content.byteLength, chunks: Buffer.concat(chunks.map(c => c.id)) }
  return { entry, chunks }
}

/** Entries in memory; `onChunk` sees each chunk as the pushing side reads it. */
class MemorySource implements RestorePushSource {
  readonly list: StagedEntry[] = []
  readonly stored = new Map<string, { rawLength: number, compressed: Uint8Array }>()
  onChunk: (n: number) => void = () => {}
  private served = 0

  file (path: string, content: Buffer): void {
    const { entry, chunks } = fileEntry(path, content)
    for (const c of chunks) this.stored.set(toHex(c.id), { rawLength: c.plain.byteLength, compressed: compressChunk(c.plain) })
    this.list.push(entry)
  }

  entries = (): StagedEntry[] => this.list
  chunk = (id: Uint8Array): { rawLength: number, compressed: Uint8Array } => {
    this.onChunk(++this.served)
    const c = this.stored.get(toHex(id))
    if (c === undefined) throw new HoldfastError('CHUNK_MISSING', toHex(id))
    return c
  }
}

/** The agent's side exactly as the agent wires it: the writer openRestoreDir returns. */
class AgentTarget implements RestoreTarget {
  failures: unknown[] = []
  constructor (readonly root: string) {}
  open = async (header: RestoreHeader): Promise<RestoreWriter> => {
    const dir = openRestoreDir(this.root, header.label, header.overwrite, undefined, { bytes: header.bytes })
    return {
      add: async (e, chunk) => { try { await dir.add(e, chunk) } catch (err) { this.failures.push(err); throw err } },
      finish: () => dir.finish(),
      get errors () { return dir.errors },
      abort: () => { dir.abort() }
    }
  }
}

describe('integration: restores that fail part way or cannot fit', function () {
  this.timeout(60_000)
  const nodes: HoldfastNode[] = []
  let manager: HoldfastNode
  let agentNode: HoldfastNode
  let root: string
  let target: AgentTarget
  let agentLog: string[]

  async function makeNode (fleetKey: string): Promise<HoldfastNode> {
    const node = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
    nodes.push(node)
    return node
  }
  const addr = (): Multiaddr => agentNode.getMultiaddrs()[0]

  beforeEach(async () => {
    const fleetKey = newFleetKey()
    manager = await makeNode(fleetKey)
    agentNode = await makeNode(fleetKey)
    root = join(newDir(), 'restores')
    target = new AgentTarget(root)
    agentLog = []
    const log = createLogger('agent', 'warn', line => { agentLog.push(line) })
    await new RestoreService(agentNode, { target, allow: p => p === manager.peerId.toString(), log }).start()
  })

  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })
  after(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

  it('a push cut part way (the manager side aborts mid-file) leaves no label directory and no partial content', async () => {
    const src = new MemorySource()
    src.file('first.txt', Buffer.from('written whole before the cut\n'))
    src.file('big.bin', seededBytes('cut', 640 * 1024)) // ten chunks
    const controller = new AbortController()
    // the cut comes while big.bin is being written: first.txt is down by then
    src.onChunk = n => { if (n === 9) controller.abort(new Error('manager side killed')) }
    await thrown(async () => await new RestoreClient(manager).push(addr(), { restoreId: 'cut', label: 'restore-9-cut', overwrite: false }, src, { signal: controller.signal }))
    // the agent's side of the exchange has failed and cleaned up (bounded wait on the outcome)
    await waitFor('the agent to see the cut and clean up', () => target.failures.length > 0 && (!existsSync(root) || readdirSync(root).length === 0), 10_000)
    assert.equal(existsSync(join(root, 'restore-9-cut')), false, 'no label directory with part of a restore in it')
    assert.deepEqual(readdirSync(root), [], 'and no partial directory left behind')

    // the same label can be pushed again, in full
    src.onChunk = () => {}
    const ok = await new RestoreClient(manager).push(addr(), { restoreId: 'again', label: 'restore-9-cut', overwrite: false }, src)
    assert.deepEqual(ok.errors, [])
    assert.ok(readFileSync(join(root, 'restore-9-cut', 'home', 'big.bin')).equals(seededBytes('cut', 640 * 1024)))
    assert.deepEqual(readdirSync(root), ['restore-9-cut'])
  })

  it('--overwrite swaps the whole label: the new restore, nothing of the old one, no partial left', async () => {
    const old = join(root, 'restore-3-swap', 'home')
    mkdirSync(old, { recursive: true })
    writeFileSync(join(old, 'stale.txt'), 'from an earlier restore')
    writeFileSync(join(old, 'a.txt'), 'old a')
    const src = new MemorySource()
    src.file('a.txt', Buffer.from('new a'))
    const r = await new RestoreClient(manager).push(addr(), { restoreId: 'swap', label: 'restore-3-swap', overwrite: true }, src)
    assert.deepEqual(r.errors, [])
    assert.equal(readFileSync(join(old, 'a.txt'), 'utf8'), 'new a')
    assert.equal(existsSync(join(old, 'stale.txt')), false, 'the label holds exactly the restore')
    assert.deepEqual(readdirSync(root), ['restore-3-swap'], 'no partial or replaced directory left')
  })

  it('a push that cannot fit is refused with RESTORE_NO_SPACE before anything is written (real statfs)', async () => {
    const src = new MemorySource()
    src.file('a.txt', Buffer.from('small'))
    // more than any file system here holds: the agent's real statfs says no
    const err = await thrown(async () => await new RestoreClient(manager).push(addr(), { restoreId: 'big', label: 'restore-5-big', overwrite: false, bytes: 2 ** 52 }, src))
    assert.ok(err instanceof HoldfastError && err.code === 'REMOTE_ERROR' && err.details.remoteCode === 'RESTORE_NO_SPACE', String(err))
    assert.deepEqual(existsSync(root) ? readdirSync(root) : [], [], 'nothing written')
  })

  it('a restore on the manager host that cannot fit is refused with RESTORE_NO_SPACE before writing (injected free-space probe)', async () => {
    const dir = newDir()
    const catalog = new Catalog(join(dir, 'catalog.db'))
    const packs = new PackStore(join(dir, 'packs'))
    try {
      const ep = catalog.touchEndpoint('12D3KooWSpacePeer', 'laptop', 1)
      const content = seededBytes('space', 100_000)
      const { entry, chunks } = fileEntry('f.bin', content)
      const newChunks: NewChunk[] = chunks.map(c => ({ id: c.id, rawlen: c.plain.byteLength, ...packs.append(c.id, c.plain.byteLength, compressChunk(c.plain)) }))
      packs.sync()
      const snap = catalog.commitSnapshot({ endpointId: ep, setId: 1, sealedAt: 1, committedAt: 1, entries: [entry], chunks: newChunks })
      const probed: string[] = []
      const out = join(dir, 'out')
      const err = await thrown(async () => await restoreSnapshot(catalog, packs, { endpointId: ep, snapshotId: snap, target: out, freeSpace: p => { probed.push(p); return 99_999 } }))
      assert.ok(err instanceof HoldfastError && err.code === 'RESTORE_NO_SPACE', String(err))
      assert.deepEqual(probed, [out], 'the target\'s file system was asked')
      assert.deepEqual(readdirSync(out), [], 'nothing written')
      // with room it restores bit-exact
      const ok = await restoreSnapshot(catalog, packs, { endpointId: ep, snapshotId: snap, target: out, freeSpace: () => 100_000 })
      assert.deepEqual(ok.errors, [])
      assert.ok(readFileSync(join(out, 'home', 'f.bin')).equals(content))
    } finally {
      packs.close()
      catalog.close()
    }
  })

  it('overwrite never replaces a directory and never writes through a link (planted in the restore directory)', async () => {
    const dir = newDir()
    const restoreTo = join(dir, 'restore')
    const outside = join(dir, 'outside')
    mkdirSync(outside)
    mkdirSync(join(restoreTo, 'home', 'report.txt'), { recursive: true }) // a directory where a file will be restored
    writeFileSync(join(restoreTo, 'home', 'report.txt', 'keep.me'), 'inside the planted directory')
    symlinkSync(outside, join(restoreTo, 'home', 'sub')) // a link where a directory (a parent) will be restored
    symlinkSync(join(outside, 'direct.txt'), join(restoreTo, 'home', 'direct.txt')) // a link where a file will be restored
    const sink = new RestoreSink({ target: restoreTo, overwrite: true })
    const files = [fileEntry('report.txt', Buffer.from('report')), fileEntry('sub/inner.txt', Buffer.from('inner')), fileEntry('direct.txt', Buffer.from('direct'))]
    const plain = new Map(files.flatMap(f => f.chunks).map(c => [toHex(c.id), c.plain]))
    const provider = async (_i: number, id: Uint8Array): Promise<Uint8Array> => plain.get(toHex(id)) as Buffer
    await sink.add({ folder: 'home', path: Buffer.from('sub'), type: 'dir', mode: 0o40755, mtimeNs: MTIME, size: 0, chunks: new Uint8Array(0) }, provider)
    for (const f of files) await sink.add(f.entry, provider)
    const summary = sink.finish()

    assert.deepEqual(readdirSync(outside), [], 'nothing written outside the restore directory')
    assert.ok(lstatSync(join(restoreTo, 'home', 'report.txt')).isDirectory(), 'the directory is not replaced')
    assert.equal(readFileSync(join(restoreTo, 'home', 'report.txt', 'keep.me'), 'utf8'), 'inside the planted directory')
    assert.ok(lstatSync(join(restoreTo, 'home', 'sub')).isSymbolicLink(), 'the planted link is not followed')
    // the link where a file goes is replaced by the file itself (unlinked, then O_EXCL|O_NOFOLLOW)
    assert.ok(lstatSync(join(restoreTo, 'home', 'direct.txt')).isFile())
    assert.equal(readFileSync(join(restoreTo, 'home', 'direct.txt'), 'utf8'), 'direct')
    const failed = summary.errors.map(e => e.path).sort()
    assert.deepEqual(failed, ['home/report.txt', 'home/sub', 'home/sub/inner.txt'], JSON.stringify(summary.errors))
  })
})
