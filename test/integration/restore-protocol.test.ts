/**
 * /holdfast/restore/1 between REAL libp2p nodes (TCP + Noise with the fleet prologue + yamux)
 * in one process, on 127.0.0.1 only: the manager side pushes entries and chunks, the agent side
 * writes them with the store's RestoreSink under a restore root.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { RestoreClient, RestoreService, RESTORE_PROTOCOL, type RestoreHeader, type RestorePushSource, type RestoreTarget, type RestoreWriter } from '../../src/protocols/restore.js'
import { entryToWire } from '../../src/protocols/manifest.js'
import { FrameReader, writeFrame } from '../../src/protocols/framing.js'
import { decodeJson, encodeJson, WIRE_VERSION, type PeerGate } from '../../src/protocols/exchange.js'
import { openRestoreDir } from '../../src/restore-writer/restore-sink.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { CHUNK_ID_BYTES, toHex, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { seededBytes } from '../support/trees.js'

const LOOPBACK = '/ip4/127.0.0.1/tcp/0'
const started: HoldfastNode[] = []
const dirs: string[] = []

async function makeNode (fleetKey: string): Promise<HoldfastNode> {
  const node = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: [LOOPBACK] })
  started.push(node)
  return node
}

function addrOf (node: HoldfastNode): Multiaddr {
  const ma = node.getMultiaddrs()[0]
  assert.ok(ma !== undefined, 'node has a listen address')
  return ma
}

async function thrown (fn: () => Promise<unknown>): Promise<unknown> {
  try { await fn() } catch (err) { return err }
  assert.fail('expected a rejection, but the call succeeded')
}

async function waitFor (what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

const MTIME = 1_700_000_000_123_456_000n

/** A source tree held in memory: entries and the stored (compressed) chunks they name. */
class MemorySource implements RestorePushSource {
  readonly list: StagedEntry[] = []
  readonly chunks = new Map<string, { rawLength: number, compressed: Uint8Array }>()

  file (path: string, content: Buffer, options: { chunkSize?: number, linkKey?: string, mode?: number } = {}): StagedEntry {
    const size = options.chunkSize ?? 64 * 1024
    const ids: Uint8Array[] = []
    for (let off = 0; off < content.byteLength; off += size) {
      const plain = content.subarray(off, off + size)
      const id = chunkId(plain)
      this.chunks.set(toHex(id), { rawLength: plain.byteLength, compressed: compressChunk(plain) })
      ids.push(id)
    }
    const e: StagedEntry = { folder: 'home', path: Buffer.from(path), type: 'file', mode: 0o100000 | (options.mode ?? 0o640), mtimeNs: MTIME, size: content.byteLength, chunks: Buffer.concat(ids) }
    if (options.linkKey !== undefined) e.linkKey = options.linkKey
    this.list.push(e)
    return e
  }

  dir (path: string): void {
    this.list.push({ folder: 'home', path: Buffer.from(path), type: 'dir', mode: 0o40750, mtimeNs: MTIME, size: 0, chunks: new Uint8Array(0) })
  }

  symlink (path: string, target: string): void {
    this.list.push({ folder: 'home', path: Buffer.from(path), type: 'symlink', mode: 0o120777, mtimeNs: MTIME, size: 0, chunks: new Uint8Array(0), target: Buffer.from(target) })
  }

  entries = (): StagedEntry[] => this.list
  chunk = (id: Uint8Array): { rawLength: number, compressed: Uint8Array } => {
    const c = this.chunks.get(toHex(id))
    if (c === undefined) throw new HoldfastError('CHUNK_MISSING', toHex(id))
    return c
  }
}

/** The agent's side as the agent wires it, recording each writer's outcome. */
class DirTarget implements RestoreTarget {
  opened: RestoreHeader[] = []
  failures: unknown[] = []
  constructor (readonly root: string) {}
  open = async (header: RestoreHeader): Promise<RestoreWriter> => {
    this.opened.push(header)
    const sink = openRestoreDir(this.root, header.label, header.overwrite)
    return {
      add: async (e, chunk) => { try { await sink.add(e, chunk) } catch (err) { this.failures.push(err); throw err } },
      finish: () => sink.finish(),
      get errors () { return sink.errors },
      abort: () => { sink.abort() }
    }
  }
}

function newDir (): string {
  const d = mkdtempSync(join(tmpdir(), 'holdfast-restore-proto-'))
  dirs.push(d)
  return d
}

describe('integration: /holdfast/restore/1 between real libp2p nodes', function () {
  this.timeout(60_000)
  let fleetKey: string
  let manager: HoldfastNode
  let agent: HoldfastNode
  let root: string
  let target: DirTarget

  async function serve (allow: PeerGate = peer => peer === manager.peerId.toString()): Promise<RestoreService> {
    const service = new RestoreService(agent, { target, allow, log: silentLogger })
    await service.start()
    return service
  }

  beforeEach(async function () {
    fleetKey = newFleetKey()
    manager = await makeNode(fleetKey)
    agent = await makeNode(fleetKey)
    root = join(newDir(), 'restores')
    target = new DirTarget(root)
  })

  afterEach(async function () {
    await Promise.all(started.splice(0).map(async n => { await n.stop() }))
  })

  after(function () {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
  })

  it('writes files (many chunks, sparse, empty, hard links), directories and symlinks under <root>/<label>, and reports a summary', async function () {
    await serve()
    const src = new MemorySource()
    const big = seededBytes('big', 300_000)
    const sparse = Buffer.concat([Buffer.alloc(200 * 1024), Buffer.from('tail')])
    src.dir('docs')
    src.file('docs/big.bin', big, { chunkSize: 64 * 1024 })
    src.file('docs/sparse.bin', sparse, { chunkSize: 128 * 1024 })
    src.file('empty.txt', Buffer.alloc(0))
    src.file('a.txt', Buffer.from('linked'), { linkKey: 'ino-1' })
    src.file('b.txt', Buffer.from('linked'), { linkKey: 'ino-1' })
    src.symlink('docs/link', '../a.txt')
    const summary = await new RestoreClient(manager).push(addrOf(agent), { restoreId: 'r1', label: 'restore-1-test', overwrite: false }, src)
    assert.deepEqual(summary.errors, [])
    assert.equal(summary.files, 5)
    assert.equal(summary.dirs, 1)
    assert.equal(summary.symlinks, 1)
    assert.equal(summary.bytes, big.byteLength + sparse.byteLength + 6, 'a hard link is linked, not written again')
    const home = join(root, 'restore-1-test', 'home')
    assert.ok(readFileSync(join(home, 'docs', 'big.bin')).equals(big))
    assert.ok(readFileSync(join(home, 'docs', 'sparse.bin')).equals(sparse))
    assert.equal(readFileSync(join(home, 'empty.txt')).byteLength, 0)
    assert.equal(statSync(join(home, 'a.txt')).ino, statSync(join(home, 'b.txt')).ino, 'hard link restored as a link')
    assert.equal(readlinkSync(join(home, 'docs', 'link')), '../a.txt')
    assert.equal(statSync(join(home, 'docs', 'big.bin')).mode & 0o7777, 0o640)
    assert.equal(statSync(join(home, 'docs')).mode & 0o7777, 0o750)
    assert.ok(Math.abs(statSync(join(home, 'docs', 'big.bin')).mtimeMs - Number(MTIME) / 1e6) < 0.01)

    // the same label again without overwrite is refused; with overwrite, files are replaced
    const again = await thrown(async () => await new RestoreClient(manager).push(addrOf(agent), { restoreId: 'r2', label: 'restore-1-test', overwrite: false }, src))
    assert.ok(again instanceof HoldfastError && again.code === 'REMOTE_ERROR' && again.details.remoteCode === 'RESTORE_TARGET_NOT_EMPTY', String(again))
    const over = await new RestoreClient(manager).push(addrOf(agent), { restoreId: 'r3', label: 'restore-1-test', overwrite: true }, src)
    assert.deepEqual(over.errors, [])
    assert.ok(readFileSync(join(home, 'docs', 'big.bin')).equals(big))
  })

  it('refuses a peer that is not the pinned manager, and writes nothing', async function () {
    await serve(() => false)
    const src = new MemorySource()
    src.file('x.txt', Buffer.from('x'))
    const err = await thrown(async () => await new RestoreClient(manager).push(addrOf(agent), { restoreId: 'r', label: 'nope', overwrite: false }, src))
    assert.ok(err instanceof HoldfastError && err.code === 'REMOTE_ERROR' && err.details.remoteCode === 'PEER_NOT_ALLOWED', String(err))
    assert.deepEqual(target.opened, [])
    assert.ok(!existsSync(root))
  })

  // Hostile content (docs/security.md): each unsafe name is refused by the agent's decoder,
  // the whole push fails with ENTRY_PATH_UNSAFE, and nothing at all is written.
  const UNSAFE: Array<[string, (src: MemorySource) => void]> = [
    ['a .. component', src => { src.file('../escape.txt', Buffer.from('out')) }],
    ['a .. inside the path', src => { src.file('ok/../../escape2.txt', Buffer.from('out')) }],
    ['an absolute path', src => { src.file(join(root, 'abs-escape.txt'), Buffer.from('out')) }],
    ['a NUL in a name', src => { src.file('a\0b.txt', Buffer.from('out')) }],
    ['a folder of two components', src => { src.file('x.txt', Buffer.from('out')); src.list[src.list.length - 1].folder = 'home/../..' }],
    ['a folder that is ..', src => { src.file('x.txt', Buffer.from('out')); src.list[src.list.length - 1].folder = '..' }],
    ['an absolute folder', src => { src.file('x.txt', Buffer.from('out')); src.list[src.list.length - 1].folder = '/tmp' }]
  ]
  for (const [what, add] of UNSAFE) {
    it(`refuses a push with ${what} at decode (ENTRY_PATH_UNSAFE), writing nothing`, async function () {
      await serve()
      const src = new MemorySource()
      src.file('fine.txt', Buffer.from('in'))
      add(src)
      const err = await thrown(async () => await new RestoreClient(manager).push(addrOf(agent), { restoreId: 'r', label: 'unsafe', overwrite: false }, src))
      assert.ok(err instanceof HoldfastError && err.code === 'REMOTE_ERROR' && err.details.remoteCode === 'ENTRY_PATH_UNSAFE', String(err))
      // the partial directory is gone and nothing escaped next to the root or its parent
      await waitFor('the partial restore to be removed', () => !existsSync(root) || readdirSync(root).length === 0)
      for (const name of ['escape.txt', 'escape2.txt', 'abs-escape.txt', 'x.txt']) {
        assert.ok(!existsSync(join(root, '..', name)) && !existsSync(join(root, '..', '..', name)), `${name} written outside the root`)
      }
      assert.ok(!existsSync(join(root, 'abs-escape.txt')))
    })
  }

  it('a corrupt chunk spoils its file alone: reported, the partial file removed, the next file written', async function () {
    await serve()
    const src = new MemorySource()
    const bad = src.file('bad.bin', seededBytes('bad', 200_000), { chunkSize: 64 * 1024 })
    src.file('good.txt', Buffer.from('good'))
    // the second chunk's stored bytes are another chunk's
    const second = toHex(bad.chunks.subarray(CHUNK_ID_BYTES, 2 * CHUNK_ID_BYTES))
    const other = compressChunk(seededBytes('other', 64 * 1024))
    src.chunks.set(second, { rawLength: 64 * 1024, compressed: other })
    const summary = await new RestoreClient(manager).push(addrOf(agent), { restoreId: 'r', label: 'corrupt', overwrite: false }, src)
    assert.deepEqual(summary.errors.map(e => [e.path, e.code]), [['home/bad.bin', 'CHUNK_HASH_MISMATCH']])
    assert.ok(!existsSync(join(root, 'corrupt', 'home', 'bad.bin')))
    assert.equal(readFileSync(join(root, 'corrupt', 'home', 'good.txt'), 'utf8'), 'good')
  })

  it('a stream cut before the end frame fails the exchange and removes the partial restore (no label directory)', async function () {
    await serve()
    const src = new MemorySource()
    const e = src.file('cut.bin', seededBytes('cut', 200_000), { chunkSize: 64 * 1024 })
    const stream = await manager.dialProtocol(addrOf(agent), RESTORE_PROTOCOL)
    const reader = new FrameReader(stream)
    await writeFrame(stream, encodeJson({ v: WIRE_VERSION, restoreId: 'r', label: 'cut', overwrite: false }, 1024))
    decodeJson(await reader.expect(1024, 'ok'), r => { assert.equal(r.ok, true); return true })
    await writeFrame(stream, Buffer.concat([Buffer.from([0x01]), encodeJson({ v: WIRE_VERSION, e: entryToWire(e), d: true }, 1 << 20)]))
    // the first of four chunks, then the stream ends
    const id = e.chunks.subarray(0, CHUNK_ID_BYTES)
    const c = src.chunk(id)
    const head = Buffer.alloc(1 + CHUNK_ID_BYTES + 4)
    head[0] = 0x02
    head.set(id, 1)
    head.writeUInt32BE(c.rawLength, 1 + CHUNK_ID_BYTES)
    await writeFrame(stream, Buffer.concat([head, c.compressed]))
    // written under a partial directory beside the label, never under the label itself
    const partialFile = (): string | undefined => readdirSync(root).filter(n => n.startsWith('.cut.partial-')).map(n => join(root, n, 'home', 'cut.bin')).find(p => existsSync(p))
    await waitFor('the partial file', () => partialFile() !== undefined)
    assert.ok(!existsSync(join(root, 'cut')), 'no label directory while the restore is incomplete')
    await stream.close()
    await waitFor('the writer to fail', () => target.failures.length > 0)
    const failure = target.failures[0]
    assert.ok(failure instanceof HoldfastError && failure.code === 'STREAM_ENDED_EARLY', String(failure))
    await waitFor('the partial directory to be removed', () => readdirSync(root).length === 0)
    assert.ok(!existsSync(join(root, 'cut')), 'the label directory never appears')
    // no summary comes back: the answer is a typed error frame naming why
    const answer = await thrown(async () => decodeJson(await reader.expect(1 << 20, 'an answer'), () => 'a summary'))
    assert.ok(answer instanceof HoldfastError && answer.code === 'REMOTE_ERROR' && answer.details.remoteCode === 'STREAM_ENDED_EARLY', String(answer))
  })
})
