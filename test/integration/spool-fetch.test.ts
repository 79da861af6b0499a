/**
 * Serving a pull from a REAL spool: segment files on disk, the agent's SQLite state database,
 * and the fetch protocol between two real libp2p nodes (TCP + Noise + yamux, 127.0.0.1 only).
 * A batch is looked up with one query and read a run of neighbouring chunks at a time
 * (issue 12, item 4); these tests hold it to that and to serving every chunk byte-exact, in
 * the order asked, with a missing or corrupt chunk in the middle handled as before.
 */
import { strict as assert } from 'node:assert'
import fs, { mkdtempSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { StatementSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { FetchClient, FetchService, type FetchedChunk } from '../../src/protocols/fetch.js'
import { chunkId, compressChunk, verifyChunk } from '../../src/codec/chunk-codec.js'
import { toHex } from '../../src/model/entry.js'
import { AgentStateDb, type NewSpoolChunk } from '../../src/staging/state-db.js'
import { Spool } from '../../src/staging/spool.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { systemClock } from '../../src/util/clock.js'
import { seededBytes } from '../support/trees.js'

interface Chunk { id: Uint8Array, plain: Buffer, compressed: Buffer, segment: string }

interface Rig { dir: string, state: AgentStateDb, spool: Spool, agent: HoldfastNode, manager: HoldfastNode, missing: string[] }

const rigs: Rig[] = []

/**
 * Writes chunks into spool segments the way staging workers do (appended, one after another)
 * and seals them as one set. `segmentOf` places chunk k; `skipRow` leaves a chunk's row out.
 */
async function rig (plains: Buffer[], segmentOf: (k: number) => string, skipRow: (k: number) => boolean = () => false): Promise<{ r: Rig, chunks: Chunk[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-spool-fetch-'))
  const state = new AgentStateDb(join(dir, 'agent.db'))
  const spool = new Spool(join(dir, 'spool'), state)
  const setId = state.beginSet(1)
  const segments = new Map<string, Buffer[]>()
  const sizes = new Map<string, number>()
  const rows: NewSpoolChunk[] = []
  const chunks = plains.map((plain, k) => {
    const segment = segmentOf(k)
    const c: Chunk = { id: chunkId(plain), plain, compressed: compressChunk(plain), segment }
    const offset = sizes.get(segment) ?? 0
    segments.set(segment, [...(segments.get(segment) ?? []), c.compressed])
    sizes.set(segment, offset + c.compressed.byteLength)
    if (!skipRow(k)) rows.push({ id: c.id, segment, offset, clen: c.compressed.byteLength, rawlen: plain.byteLength })
    return c
  })
  for (const [segment, parts] of segments) writeFileSync(join(spool.dir, segment), Buffer.concat(parts))
  state.sealSet(setId, [], rows, 2)
  const fleetKey = newFleetKey()
  const [agent, manager] = await Promise.all([node(fleetKey), node(fleetKey)])
  const r: Rig = { dir, state, spool, agent, manager, missing: [] }
  rigs.push(r)
  spool.onMissing = id => { r.missing.push(toHex(id)) }
  await new FetchService(agent, { source: spool, allow: () => true, log: silentLogger, clock: systemClock }).start()
  return { r, chunks }
}

async function node (fleetKey: string): Promise<HoldfastNode> {
  return await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
}

function addrOf (n: HoldfastNode): Multiaddr {
  const ma = n.getMultiaddrs()[0]
  assert.ok(ma !== undefined && ma.toString().startsWith('/ip4/127.0.0.1/'), 'the agent listens on loopback')
  return ma
}

/** Counts the spool's preads (fs.readSync) and the SQLite statements run while `fn` runs. */
async function counting<T> (fn: () => Promise<T>): Promise<{ result: T, reads: number, statements: number }> {
  const readSync = fs.readSync
  const methods = ['get', 'all', 'iterate', 'run'] as const
  const saved = methods.map(m => StatementSync.prototype[m])
  let reads = 0
  let statements = 0
  fs.readSync = ((...args: Parameters<typeof readSync>) => { reads++; return readSync(...args) }) as typeof readSync
  syncBuiltinESMExports()
  methods.forEach((m, i) => {
    const original = saved[i] as (...args: unknown[]) => unknown
    Object.defineProperty(StatementSync.prototype, m, { configurable: true, writable: true, value: function (this: StatementSync, ...args: unknown[]) { statements++; return original.apply(this, args) } })
  })
  try {
    return { result: await fn(), reads, statements }
  } finally {
    fs.readSync = readSync
    syncBuiltinESMExports()
    methods.forEach((m, i) => { Object.defineProperty(StatementSync.prototype, m, { configurable: true, writable: true, value: saved[i] }) })
  }
}

async function fetchAll (r: Rig, ids: Uint8Array[], got: FetchedChunk[] = []): Promise<FetchedChunk[]> {
  for await (const c of new FetchClient(r.manager).fetch(addrOf(r.agent), { setId: 1, ids, rate: 0 })) got.push(c)
  return got
}

async function thrown (fn: () => Promise<unknown>): Promise<HoldfastError> {
  try { await fn() } catch (err) {
    assert.ok(err instanceof HoldfastError, `a typed error, not ${String(err)}`)
    return err
  }
  assert.fail('expected a rejection')
}

function assertServed (got: FetchedChunk[], want: Chunk[]): void {
  assert.equal(got.length, want.length)
  got.forEach((g, k) => {
    assert.equal(toHex(g.id), toHex(want[k].id), `chunk ${k} is the one asked for at that position`)
    assert.equal(g.rawLength, want[k].plain.byteLength)
    assert.ok(Buffer.from(g.compressed).equals(want[k].compressed), `chunk ${k}'s spooled bytes`)
    assert.ok(verifyChunk(g.id, g.compressed, g.rawLength).equals(want[k].plain), `chunk ${k} decompresses to what was written`)
  })
}

describe('serving a fetch batch from the spool', function () {
  this.timeout(60_000)

  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await Promise.all([r.agent.stop(), r.manager.stop()])
      r.spool.closeAll()
      r.state.close()
      rmSync(r.dir, { recursive: true, force: true })
    }
  })

  it('a batch across several segments, asked out of order with a repeat, comes back byte-exact in the order asked, from one lookup and a read per run', async () => {
    // 300 chunks of 1-12 KiB (incompressible: about 2 MiB spooled, so the batch spans windows)
    // in three segments, placed round-robin as two workers and a second segment would
    const plains = Array.from({ length: 300 }, (_, k) => seededBytes(`chunk ${k}`, 1024 + (k * 7919) % (11 * 1024)))
    const { r, chunks } = await rig(plains, k => ['set-1-w0-0.seg', 'set-1-w1-0.seg', 'set-1-w0-1.seg'][k % 3])
    // request order: segment by segment backwards, then a repeat of the first chunk
    const order = [...chunks.keys()].sort((a, b) => (b % 3) - (a % 3) || a - b)
    order.push(order[0])
    const want = order.map(k => chunks[k])
    const { result: got, reads, statements } = await counting(async () => await fetchAll(r, want.map(c => c.id)))
    assertServed(got, want)
    assert.deepEqual(r.missing, [])
    assert.equal(statements, 1, 'one spool-location query for the whole batch')
    // about 2 MiB in windows of ≤ 1 MiB, each read a run per segment: a handful, not 301
    assert.ok(reads <= 12, `${reads} preads for ${want.length} chunks`)

    // a big chunk (larger than one read) between small ones is served whole too
    const big = seededBytes('big', 3 * 1024 * 1024 + 17)
    const second = await rig([plains[0], big, plains[1]], () => 'set-2-w0-0.seg')
    assertServed(await fetchAll(second.r, [2, 1, 0].map(k => second.chunks[k].id)), [2, 1, 0].map(k => second.chunks[k]))
  })

  it('a chunk with no row, or in a lost segment, in the middle of a batch: the chunks before it, then CHUNK_MISSING, and the agent is told', async () => {
    const plains = Array.from({ length: 8 }, (_, k) => seededBytes(`m ${k}`, 3000 + k))
    const { r, chunks } = await rig(plains, k => k < 6 ? 'set-1-w0-0.seg' : 'set-1-w1-0.seg', k => k === 3)
    const got: FetchedChunk[] = []
    const { result: err, statements } = await counting(async () => await thrown(async () => await fetchAll(r, [0, 1, 2, 3, 4, 5].map(k => chunks[k].id), got)))
    assert.equal(err.code, 'CHUNK_MISSING')
    assert.equal(err.details.id, toHex(chunks[3].id))
    assertServed(got, [0, 1, 2].map(k => chunks[k]))
    assert.deepEqual(r.missing, [toHex(chunks[3].id)])
    assert.equal(statements, 1, 'a chunk with no row costs no second lookup')

    // the second segment goes (deleted by hand): its chunk is missing, the ones around it are served
    unlinkSync(join(r.spool.dir, 'set-1-w1-0.seg'))
    r.missing.length = 0
    const around: FetchedChunk[] = []
    const lost = await thrown(async () => await fetchAll(r, [0, 6, 1].map(k => chunks[k].id), around))
    assert.equal(lost.code, 'CHUNK_MISSING')
    assert.equal(lost.details.id, toHex(chunks[6].id))
    assertServed(around, [chunks[0]])
    assert.deepEqual(r.missing, [toHex(chunks[6].id)])
    // and a batch without them is whole
    assertServed(await fetchAll(r, [5, 0, 4].map(k => chunks[k].id)), [5, 0, 4].map(k => chunks[k]))
  })

  it('a segment shorter than its rows say, in the middle of a batch: nothing past the corrupt chunk, REMOTE_ERROR STORE_CORRUPT, and the next batch is served', async () => {
    const plains = Array.from({ length: 10 }, (_, k) => seededBytes(`c ${k}`, 2000 + 10 * k))
    const { r, chunks } = await rig(plains, k => k < 5 ? 'set-1-w0-0.seg' : 'set-1-w1-0.seg')
    // cut the second segment in the middle of its third chunk (chunk 7): 7, 8 and 9 are gone
    const cut = chunks.slice(5, 7).reduce((n, c) => n + c.compressed.byteLength, 0) + 100
    truncateSync(join(r.spool.dir, 'set-1-w1-0.seg'), cut)
    const order = [0, 5, 1, 6, 7, 2, 8]
    const got: FetchedChunk[] = []
    const { result: err, statements } = await counting(async () => await thrown(async () => await fetchAll(r, order.map(k => chunks[k].id), got)))
    assert.equal(err.code, 'REMOTE_ERROR')
    assert.equal(err.details.remoteCode, 'STORE_CORRUPT')
    // the frames before the corrupt one may or may not have left the agent's send buffer
    // before the error frame (as before); what arrives is exact and in order
    assert.ok(got.length <= 4, `nothing past the corrupt chunk: got ${got.length}`)
    assertServed(got, order.slice(0, got.length).map(k => chunks[k]))
    assert.deepEqual(r.missing, [], 'a corrupt chunk is not a missing one')
    assert.equal(statements, 1, 'one lookup for the batch')
    const next = [6, 4, 5, 3]
    assertServed(await fetchAll(r, next.map(k => chunks[k].id)), next.map(k => chunks[k]))
  })
})
