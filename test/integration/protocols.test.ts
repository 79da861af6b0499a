/**
 * The Holdfast wire protocols (manifest, fetch, ack) between REAL libp2p nodes (TCP + Noise
 * with the fleet prologue + yamux) in one process, on 127.0.0.1 only.
 */
import { strict as assert } from 'node:assert'
import { createHash, randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { ManifestClient, ManifestService, MANIFEST_PROTOCOL, MANIFEST_LIMITS, type AgentManifest, type ManifestSource } from '../../src/protocols/manifest.js'
import { FetchClient, FetchService, FETCH_PROTOCOL, FETCH_LIMITS, type ChunkSource, type FetchedChunk, type SpooledChunk } from '../../src/protocols/fetch.js'
import { AckClient, AckService, ACK_PROTOCOL, type AckSink } from '../../src/protocols/ack.js'
import { FrameReader, writeFrame } from '../../src/protocols/framing.js'
import { decodeJson, WIRE_VERSION, type PeerGate } from '../../src/protocols/exchange.js'
import { chunkId, compressChunk, verifyChunk } from '../../src/codec/chunk-codec.js'
import { CHUNK_ID_BYTES, toHex, type SetSummary, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError, isHoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { ManualClock, systemClock } from '../../src/util/clock.js'

// ---------------------------------------------------------------- helpers

const LOOPBACK = '/ip4/127.0.0.1/tcp/0'
const allowAll: PeerGate = () => true

/** Every node a test starts; afterEach stops them all. */
const started: HoldfastNode[] = []

async function makeNode (fleetKey: string): Promise<HoldfastNode> {
  const node = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: [LOOPBACK] })
  started.push(node)
  for (const ma of node.getMultiaddrs()) {
    assert.ok(ma.toString().startsWith('/ip4/127.0.0.1/tcp/'), `node listens only on loopback, got ${ma.toString()}`)
  }
  return node
}

function addrOf (node: HoldfastNode): Multiaddr {
  const ma = node.getMultiaddrs()[0]
  assert.ok(ma !== undefined, 'node has a listen address')
  return ma
}

async function stopAll (): Promise<void> {
  const nodes = started.splice(0)
  await Promise.all(nodes.map(async n => { await n.stop() }))
}

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

/** Runs `fn`, expecting it to throw; returns what it threw. */
async function thrown (fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn()
  } catch (err) {
    return err
  }
  assert.fail('expected a rejection, but the call succeeded')
}

function assertHoldfast (err: unknown, code: string, remoteCode?: string): void {
  assert.ok(err instanceof HoldfastError, `expected a HoldfastError ${code}, got ${String(err)}`)
  assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`)
  if (remoteCode !== undefined) assert.equal(err.details.remoteCode, remoteCode, `expected remote code ${remoteCode}, got ${String(err.details.remoteCode)}: ${err.message}`)
}

/** Bounded polling for a condition (never a sleep standing in for synchronisation). */
async function waitFor (what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

interface Chunk { id: Uint8Array, plain: Buffer, compressed: Buffer }

function makeChunk (plain: Buffer): Chunk {
  return { id: chunkId(plain), plain, compressed: compressChunk(plain) }
}

/** An in-memory ChunkSource that counts its reads. */
class MapChunkSource implements ChunkSource {
  readonly chunks = new Map<string, SpooledChunk>()
  reads = 0
  constructor (chunks: Chunk[] = []) {
    for (const c of chunks) this.chunks.set(toHex(c.id), { rawLength: c.plain.byteLength, compressed: c.compressed })
  }

  readChunk = async (id: Uint8Array): Promise<SpooledChunk | null> => {
    this.reads++
    return this.chunks.get(toHex(id)) ?? null
  }
}

/** An in-memory ManifestSource that counts its calls. */
class MemoryManifestSource implements ManifestSource {
  manifestCalls = 0
  entriesCalls = 0
  constructor (readonly m: AgentManifest, readonly sets: Map<number, StagedEntry[]>) {}

  manifest = (): AgentManifest => {
    this.manifestCalls++
    return this.m
  }

  entries = (setId: number): Iterable<StagedEntry> => {
    this.entriesCalls++
    const list = this.sets.get(setId)
    if (list === undefined) throw new HoldfastError('SET_UNKNOWN', `no sealed set ${setId}`)
    return list
  }
}

/** Entries of one set, with raw-byte (non-UTF-8) names, symlinks, deletions, chunk lists. */
function makeEntries (setId: number, count: number): StagedEntry[] {
  const types = ['file', 'dir', 'symlink', 'deleted', 'special'] as const
  const out: StagedEntry[] = []
  for (let i = 0; i < count; i++) {
    const type = types[i % types.length]
    // 0xff, 0xfe and a lone continuation byte: not UTF-8, must survive byte-for-byte
    const path = Buffer.concat([Buffer.from(`set${setId}/dir${i % 37}/f${i}-`), Buffer.from([0xff, 0xfe, 0x80, 0x2e, 0x62, 0x69, 0x6e])])
    const nChunks = type === 'file' ? i % 4 : 0
    const chunks = new Uint8Array(randomBytes(nChunks * CHUNK_ID_BYTES))
    const e: StagedEntry = {
      folder: i % 3 === 0 ? 'docs' : 'home-ü',
      path: new Uint8Array(path),
      type,
      mode: type === 'deleted' ? 0 : (type === 'dir' ? 0o40755 : 0o100644),
      // beyond 2^53: the wire must carry it exactly
      mtimeNs: 1_700_000_000_123_456_789n + BigInt(i) * 1_000_000_007n,
      size: type === 'file' ? i * 1000 + 17 : 0,
      chunks
    }
    if (type === 'symlink') e.target = new Uint8Array(Buffer.from([0x2e, 0x2e, 0x2f, 0xc3, 0x28, 0x74, i & 0xff]))
    out.push(e)
  }
  return out
}

function normaliseEntry (e: StagedEntry): Record<string, unknown> {
  return {
    folder: e.folder,
    path: Buffer.from(e.path).toString('hex'),
    type: e.type,
    mode: e.mode,
    mtimeNs: e.mtimeNs.toString(),
    size: e.size,
    chunks: Buffer.from(e.chunks).toString('hex'),
    target: e.target === undefined ? null : Buffer.from(e.target).toString('hex')
  }
}

/**
 * Sends raw bytes on a fresh stream, half-closes (unless told not to), and returns every frame
 * the service sent back, plus the error the stream ended with, if any. Reading starts right
 * after the dial, before anything is sent: a libp2p 3 stream iterator started only after the
 * remote has reset the stream (with data still buffered) yields the data and then never ends.
 */
async function rawExchange (node: HoldfastNode, to: Multiaddr, protocol: string, bytes: Uint8Array[], options: { close?: boolean, maxFrame?: number } = {}): Promise<{ frames: Uint8Array[], error?: unknown }> {
  const signal = AbortSignal.timeout(15_000)
  const stream = await node.dialProtocol(to, protocol, { signal })
  const received: Uint8Array[] = []
  const reading = (async () => {
    for await (const chunk of stream) received.push(chunk.subarray())
  })().then(() => undefined, (err: unknown) => err ?? new Error('stream failed'))
  let sendError: unknown
  try {
    for (const b of bytes) {
      if (!stream.send(b)) await stream.onDrain({ signal })
    }
    if (options.close !== false) await stream.close({ signal })
  } catch (err) {
    // the service may reset the stream before we finish sending: that is an answer too
    sendError = err
  }
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<'hung'>(resolve => { timer = setTimeout(() => { resolve('hung') }, 15_000) })
  const ended = await Promise.race([reading, hung])
  clearTimeout(timer)
  assert.notEqual(ended, 'hung', `the service neither answered nor ended the stream within 15 s (status ${stream.status})`)
  stream.abort(new Error('exchange over'))
  const frames: Uint8Array[] = []
  const all = Buffer.concat(received)
  const reader = new FrameReader((async function * () { yield all })())
  let error: unknown = ended ?? sendError
  try {
    for (;;) {
      const f = await reader.next(options.maxFrame ?? 1024 * 1024)
      if (f === null) break
      frames.push(f)
    }
  } catch (err) {
    error ??= err
  }
  return error === undefined ? { frames } : { frames, error }
}

function frameOf (payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.byteLength)
  new DataView(out.buffer).setUint32(0, payload.byteLength, false)
  out.set(payload, 4)
  return out
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

/** The remote error code carried by a JSON error frame, or undefined if it is not one. */
function jsonErrorCode (payload: Uint8Array): string | undefined {
  try {
    decodeJson(payload, () => null)
  } catch (err) {
    if (isHoldfastError(err, 'REMOTE_ERROR')) return String(err.details.remoteCode)
  }
  return undefined
}

/**
 * What a service must do with a malformed request: answer with exactly one typed error frame
 * (whose code is the expected one) and end the stream cleanly, so the client learns why. A
 * reset right after the error frame is not enough: the reset can overtake the frame.
 */
function assertRefused (result: { frames: Uint8Array[], error?: unknown }, expectedCode: string, kind: 'fetch' | 'json', name: string): void {
  assert.equal(result.frames.length, 1, `${name}: exactly one (error) frame, got ${result.frames.length} (stream error: ${String(result.error)})`)
  const f = result.frames[0]
  if (kind === 'fetch') assert.equal(f[0], 0xff, `${name}: a fetch error frame starts with 0xFF`)
  assert.equal(jsonErrorCode(kind === 'fetch' ? f.subarray(1) : f), expectedCode, `${name}: error code`)
  assert.equal(result.error, undefined, `${name}: the stream ends cleanly after the error frame, not with ${String(result.error)}`)
}

// ---------------------------------------------------------------- tests

describe('integration: protocols over real libp2p nodes', function () {
  this.timeout(60_000)
  afterEach(async () => { await stopAll() })

  describe('manifest', () => {
    it('lists sets and streams every entry of several-page sets byte-exact, non-UTF-8 names included', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const sets: SetSummary[] = [
        { id: 3, sealedAt: 1_700_000_000_000, entries: 5003, chunks: 7000, rawBytes: 2 ** 40 + 5, storedBytes: 123_456_789 },
        { id: 4, sealedAt: 1_700_000_100_000, entries: 1, chunks: 0, rawBytes: 0, storedBytes: 0 },
        { id: 9, sealedAt: 1_700_000_200_000, entries: 0, chunks: 0, rawBytes: 0, storedBytes: 0 }
      ]
      const entries = new Map<number, StagedEntry[]>([[3, makeEntries(3, 5003)], [4, makeEntries(4, 1)], [9, []]])
      const source = new MemoryManifestSource({ agentVersion: '0.1.0-test', idle: true, sets }, entries)
      const service = new ManifestService(a, { source, allow: allowAll, log: silentLogger })
      await service.start()
      const client = new ManifestClient(b)

      const listed = await client.list(addrOf(a))
      assert.deepEqual(listed, { agentVersion: '0.1.0-test', idle: true, sets })

      for (const [setId, expected] of entries) {
        const pages = await collect(client.entries(addrOf(a), setId))
        if (setId === 3) {
          // 5003 entries at 2000 a page: three pages, none over the page size
          assert.deepEqual(pages.map(p => p.length), [2000, 2000, 1003])
        }
        const got = pages.flat()
        assert.equal(got.length, expected.length)
        assert.deepEqual(got.map(normaliseEntry), expected.map(normaliseEntry))
      }
      // spot check that raw bytes really are raw (not replaced by U+FFFD on the way)
      const first = (await collect(client.entries(addrOf(a), 4))).flat()[0]
      assert.deepEqual(Buffer.from(first.path).subarray(-7), Buffer.from([0xff, 0xfe, 0x80, 0x2e, 0x62, 0x69, 0x6e]))
      assert.equal(source.manifestCalls, 1)
    })

    it('reports an unknown set as REMOTE_ERROR SET_UNKNOWN and keeps serving', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const source = new MemoryManifestSource({ agentVersion: 'x', idle: false, sets: [] }, new Map([[1, makeEntries(1, 3)]]))
      await new ManifestService(a, { source, allow: allowAll, log: silentLogger }).start()
      const client = new ManifestClient(b)
      assertHoldfast(await thrown(async () => await collect(client.entries(addrOf(a), 77))), 'REMOTE_ERROR', 'SET_UNKNOWN')
      assert.equal((await collect(client.entries(addrOf(a), 1))).flat().length, 3)
    })
    // Hostile content (docs/security.md): the manager's decoder refuses every unsafe name an
    // agent lists, so no such entry reaches the puller, the catalog or a later restore.
    it('refuses an entry with .., an absolute path, a NUL or a folder that is not one component (ENTRY_PATH_UNSAFE)', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const safe: StagedEntry = { folder: 'docs', path: utf8('a/b.txt'), type: 'file', mode: 0o100644, mtimeNs: 1n, size: 0, chunks: new Uint8Array(0) }
      const hostile: Array<[string, Partial<StagedEntry>]> = [
        ['..', { path: utf8('../../etc/passwd') }],
        ['.. inside', { path: utf8('a/../../x') }],
        ['absolute', { path: utf8('/etc/passwd') }],
        ['NUL', { path: utf8('a\0b') }],
        ['empty component', { path: utf8('a//b') }],
        ['folder with a slash', { folder: 'docs/../..' }],
        ['folder ..', { folder: '..' }],
        ['folder .', { folder: '.' }]
      ]
      const sets = new Map<number, StagedEntry[]>(hostile.map(([, over], i) => [i + 1, [safe, { ...safe, ...over }]]))
      await new ManifestService(a, { source: new MemoryManifestSource({ agentVersion: 'x', idle: true, sets: [] }, sets), allow: allowAll, log: silentLogger }).start()
      const client = new ManifestClient(b)
      for (const [i, [what]] of hostile.entries()) {
        const err = await thrown(async () => await collect(client.entries(addrOf(a), i + 1)))
        assert.ok(err instanceof HoldfastError && err.code === 'ENTRY_PATH_UNSAFE', `${what}: ${String(err)}`)
      }
      // a safe set still reads
      sets.set(99, [safe])
      assert.equal((await collect(client.entries(addrOf(a), 99))).flat().length, 1)
    })
  })

  describe('fetch', () => {
    it('returns the asked chunks in request order, each verifying against its id', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const chunks = [
        makeChunk(Buffer.from('hello holdfast\n'.repeat(1000))),
        makeChunk(randomBytes(300_000)),
        makeChunk(Buffer.alloc(1)),
        makeChunk(Buffer.alloc(4 * 1024 * 1024, 7)), // the largest chunk size, very compressible
        makeChunk(randomBytes(4 * 1024 * 1024)) // the largest chunk size, incompressible
      ]
      const source = new MapChunkSource(chunks)
      await new FetchService(a, { source, allow: allowAll, log: silentLogger, clock: systemClock }).start()
      const client = new FetchClient(b)
      // an order that is not the insertion order, with a repeat
      const order = [4, 0, 2, 1, 3, 0]
      const got = await collect(client.fetch(addrOf(a), { setId: 1, ids: order.map(i => chunks[i].id), rate: 0 }))
      assert.equal(got.length, order.length)
      got.forEach((g, k) => {
        const want = chunks[order[k]]
        assert.deepEqual(Buffer.from(g.id), Buffer.from(want.id), `chunk ${k} is in request order`)
        assert.equal(g.rawLength, want.plain.byteLength)
        assert.deepEqual(Buffer.from(g.compressed), want.compressed)
        assert.deepEqual(verifyChunk(g.id, g.compressed, g.rawLength), want.plain)
      })
      assert.equal(source.reads, order.length)

      // an empty batch is answered with just the end frame
      assert.deepEqual(await collect(client.fetch(addrOf(a), { setId: 1, ids: [], rate: 0 })), [])
    })

    it('throws CHUNK_MISSING for a chunk the agent lacks, after yielding the ones before it', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const chunks = [makeChunk(randomBytes(1000)), makeChunk(randomBytes(2000))]
      const absent = chunkId(Buffer.from('not in the spool'))
      await new FetchService(a, { source: new MapChunkSource(chunks), allow: allowAll, log: silentLogger, clock: systemClock }).start()
      const client = new FetchClient(b)
      const got: FetchedChunk[] = []
      const err = await thrown(async () => {
        for await (const c of client.fetch(addrOf(a), { setId: 1, ids: [chunks[0].id, absent, chunks[1].id], rate: 0 })) got.push(c)
      })
      assertHoldfast(err, 'CHUNK_MISSING')
      assert.equal((err as HoldfastError).details.id, toHex(absent))
      assert.equal(got.length, 1)
      assert.deepEqual(Buffer.from(got[0].id), Buffer.from(chunks[0].id))
    })

    it('hands wrong bytes to the caller, whose verifyChunk throws CHUNK_HASH_MISMATCH', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const good = makeChunk(randomBytes(5000))
      const claimed = makeChunk(randomBytes(5000))
      const impostor = makeChunk(randomBytes(5000)) // same length, other bytes
      const source = new MapChunkSource([good])
      source.chunks.set(toHex(claimed.id), { rawLength: impostor.plain.byteLength, compressed: impostor.compressed })
      // and one whose bytes are not zstd at all
      const garbled = makeChunk(randomBytes(100))
      source.chunks.set(toHex(garbled.id), { rawLength: 100, compressed: Buffer.from('definitely not zstd') })
      await new FetchService(a, { source, allow: allowAll, log: silentLogger, clock: systemClock }).start()
      const got = await collect(new FetchClient(b).fetch(addrOf(a), { setId: 1, ids: [good.id, claimed.id, garbled.id], rate: 0 }))
      assert.equal(got.length, 3)
      assert.deepEqual(verifyChunk(got[0].id, got[0].compressed, got[0].rawLength), good.plain)
      assert.throws(() => verifyChunk(got[1].id, got[1].compressed, got[1].rawLength), (e: unknown) => isHoldfastError(e, 'CHUNK_HASH_MISMATCH'))
      assert.throws(() => verifyChunk(got[2].id, got[2].compressed, got[2].rawLength), (e: unknown) => isHoldfastError(e, 'CHUNK_HASH_MISMATCH'))
      // a lying rawLength is caught too
      assert.throws(() => verifyChunk(got[0].id, got[0].compressed, got[0].rawLength - 1), (e: unknown) => isHoldfastError(e, 'CHUNK_HASH_MISMATCH'))
    })
  })

  describe('fleet key and peer gate', () => {
    it('a peer with a different fleet key cannot connect, and no source is ever read', async () => {
      const [a, stranger] = await Promise.all([makeNode(newFleetKey()), makeNode(newFleetKey())])
      const chunk = makeChunk(randomBytes(1000))
      const chunks = new MapChunkSource([chunk])
      const manifests = new MemoryManifestSource({ agentVersion: 'x', idle: true, sets: [] }, new Map())
      const acks: unknown[] = []
      const gateCalls: string[] = []
      const gate: PeerGate = p => { gateCalls.push(p); return true }
      await new FetchService(a, { source: chunks, allow: gate, log: silentLogger, clock: systemClock }).start()
      await new ManifestService(a, { source: manifests, allow: gate, log: silentLogger }).start()
      await new AckService(a, { sink: { acknowledge: async (...args) => { acks.push(args) } }, allow: gate, log: silentLogger }).start()

      for (const protocol of [FETCH_PROTOCOL, MANIFEST_PROTOCOL, ACK_PROTOCOL]) {
        const dialStart = Date.now()
        const err = await thrown(async () => await stranger.dialProtocol(addrOf(a), protocol, { signal: AbortSignal.timeout(20_000) }))
        // refused by the handshake, not by running out of time
        assert.ok(Date.now() - dialStart < 15_000, `dial failed only after ${Date.now() - dialStart} ms`)
        assert.ok(err instanceof Error)
        // the Noise prologues differ, so the handshake fails (not a timeout, not a later refusal)
        assert.equal(err.name, 'EncryptionFailedError', `dial failed with ${err.name}: ${err.message}`)
      }
      await thrown(async () => await collect(new FetchClient(stranger).fetch(addrOf(a), { setId: 1, ids: [chunk.id], rate: 0 }, { timeoutMs: 20_000 })))
      await thrown(async () => await new ManifestClient(stranger).list(addrOf(a), { timeoutMs: 20_000 }))
      await thrown(async () => await new AckClient(stranger).ack(addrOf(a), 1, 1))

      assert.equal(chunks.reads, 0)
      assert.equal(manifests.manifestCalls + manifests.entriesCalls, 0)
      assert.deepEqual(acks, [])
      assert.deepEqual(gateCalls, [], 'the gate is never even consulted: there is no connection')
      assert.equal(a.getConnections(stranger.peerId).length, 0)
      assert.equal(stranger.getConnections(a.peerId).length, 0)
    })

    it('a fleet peer the gate does not allow is refused with PEER_NOT_ALLOWED and no source is read', async () => {
      const fleetKey = newFleetKey()
      const [a, manager, other] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey), makeNode(fleetKey)])
      const chunk = makeChunk(randomBytes(1000))
      const chunks = new MapChunkSource([chunk])
      const manifests = new MemoryManifestSource({ agentVersion: 'x', idle: true, sets: [{ id: 1, sealedAt: 1, entries: 1, chunks: 1, rawBytes: 1, storedBytes: 1 }] }, new Map([[1, makeEntries(1, 1)]]))
      const gateCalls: string[] = []
      const gate: PeerGate = p => { gateCalls.push(p); return p === manager.peerId.toString() }
      await new FetchService(a, { source: chunks, allow: gate, log: silentLogger, clock: systemClock }).start()
      await new ManifestService(a, { source: manifests, allow: gate, log: silentLogger }).start()

      assertHoldfast(await thrown(async () => await new ManifestClient(other).list(addrOf(a))), 'REMOTE_ERROR', 'PEER_NOT_ALLOWED')
      assertHoldfast(await thrown(async () => await collect(new ManifestClient(other).entries(addrOf(a), 1))), 'REMOTE_ERROR', 'PEER_NOT_ALLOWED')
      // the fetch service refuses with its own 0xFF error frame, which the client reads as the remote's code
      assertHoldfast(await thrown(async () => await collect(new FetchClient(other).fetch(addrOf(a), { setId: 1, ids: [chunk.id], rate: 0 }))), 'REMOTE_ERROR', 'PEER_NOT_ALLOWED')
      assert.equal(chunks.reads, 0)
      assert.equal(manifests.manifestCalls + manifests.entriesCalls, 0)
      assert.ok(gateCalls.length >= 3 && gateCalls.every(p => p === other.peerId.toString()), 'the gate saw the refused peer id')

      // the allowed manager is served on the same node
      assert.equal((await new ManifestClient(manager).list(addrOf(a))).sets.length, 1)
      assert.equal((await collect(new FetchClient(manager).fetch(addrOf(a), { setId: 1, ids: [chunk.id], rate: 0 }))).length, 1)
      assert.equal(chunks.reads, 1)
    })
  })

  describe('failures inside a service reach the client as typed error frames', () => {
    it('a chunk source failing mid-batch: the client gets the chunks before it, then REMOTE_ERROR with the code; the service keeps serving', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const chunks = [makeChunk(randomBytes(1000)), makeChunk(randomBytes(2000)), makeChunk(randomBytes(3000))]
      const source = new MapChunkSource(chunks)
      const failing: ChunkSource = {
        readChunk: async id => {
          if (Buffer.from(id).equals(Buffer.from(chunks[1].id))) throw new HoldfastError('STORE_CORRUPT', 'spool file unreadable')
          return await source.readChunk(id)
        }
      }
      await new FetchService(a, { source: failing, allow: allowAll, log: silentLogger, clock: systemClock }).start()
      const client = new FetchClient(b)
      const got: FetchedChunk[] = []
      const err = await thrown(async () => {
        for await (const c of client.fetch(addrOf(a), { setId: 1, ids: chunks.map(c => c.id), rate: 0 })) got.push(c)
      })
      assertHoldfast(err, 'REMOTE_ERROR', 'STORE_CORRUPT')
      assert.ok(got.length <= 1, 'nothing past the failed chunk')
      // the same service answers the next batch
      assert.equal((await collect(client.fetch(addrOf(a), { setId: 1, ids: [chunks[0].id, chunks[2].id], rate: 0 }))).length, 2)
    })

    it('a manifest entry list failing after its first page: REMOTE_ERROR with the code, never a short list', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const entries = makeEntries(1, MANIFEST_LIMITS.entriesPerPage + 10)
      const source = new MemoryManifestSource({ agentVersion: 'x', idle: true, sets: [] }, new Map())
      source.entries = (): Iterable<StagedEntry> => (function * () {
        yield * entries.slice(0, MANIFEST_LIMITS.entriesPerPage + 5)
        throw new HoldfastError('SET_UNKNOWN', 'the set was dropped while it was being listed')
      })()
      await new ManifestService(a, { source, allow: allowAll, log: silentLogger }).start()
      const pages: StagedEntry[][] = []
      const err = await thrown(async () => { for await (const page of new ManifestClient(b).entries(addrOf(a), 1)) pages.push(page) })
      assertHoldfast(err, 'REMOTE_ERROR', 'SET_UNKNOWN')
      assert.equal(pages.flat().length, MANIFEST_LIMITS.entriesPerPage, 'the first page arrived, the partial second did not')
    })

    it('an ack the sink cannot apply is answered REMOTE_ERROR with the sink\'s code', async () => {
      const fleetKey = newFleetKey()
      const [agent, manager] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      await new AckService(agent, { sink: { acknowledge: async () => { throw new HoldfastError('SET_UNKNOWN', 'no such set') } }, allow: allowAll, log: silentLogger }).start()
      assertHoldfast(await thrown(async () => { await new AckClient(manager).ack(addrOf(agent), 3, 4) }), 'REMOTE_ERROR', 'SET_UNKNOWN')
    })
  })

  describe('malformed requests by hand', () => {
    it('the fetch service refuses bad requests without crashing and then serves a valid one', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const chunk = makeChunk(randomBytes(10_000))
      const source = new MapChunkSource([chunk])
      await new FetchService(a, { source, allow: allowAll, log: silentLogger, clock: systemClock }).start()
      const to = addrOf(a)
      const id = toHex(chunk.id)

      const cases: Array<{ name: string, bytes: Uint8Array[], code: string, close?: boolean }> = [
        { name: 'invalid JSON', bytes: [frameOf(utf8('{"v":1,"setId":1,"ids":['))], code: 'FRAME_MALFORMED' },
        { name: 'not UTF-8', bytes: [frameOf(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))], code: 'FRAME_MALFORMED' },
        { name: 'a JSON array', bytes: [frameOf(utf8('[1,2,3]'))], code: 'FRAME_MALFORMED' },
        { name: 'wrong version', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION + 1, setId: 1, ids: [id], rate: 0 })))], code: 'UNSUPPORTED_VERSION' },
        { name: 'no version', bytes: [frameOf(utf8(JSON.stringify({ setId: 1, ids: [id], rate: 0 })))], code: 'UNSUPPORTED_VERSION' },
        { name: 'ids not hex', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, setId: 1, ids: ['zz'], rate: 0 })))], code: 'FRAME_MALFORMED' },
        { name: 'negative rate', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, setId: 1, ids: [id], rate: -5 })))], code: 'FRAME_MALFORMED' },
        { name: 'too many ids', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, setId: 1, ids: new Array(FETCH_LIMITS.maxIdsPerRequest + 1).fill(id), rate: 0 })))], code: 'FRAME_MALFORMED' },
        // a declared length over the limit, and no payload at all: refused on the header alone
        { name: 'oversized frame header only', bytes: [new Uint8Array([0x7f, 0xff, 0xff, 0xff])], code: 'FRAME_TOO_LARGE', close: false },
        { name: 'oversized frame, half-closed', bytes: [frameOf(new Uint8Array(FETCH_LIMITS.maxRequestBytes + 1))], code: 'FRAME_TOO_LARGE' },
        { name: 'truncated frame', bytes: [new Uint8Array([0, 0, 0, 100, 0x7b])], code: 'FRAME_TRUNCATED' },
        { name: 'nothing at all', bytes: [], code: 'STREAM_ENDED_EARLY' }
      ]
      for (const c of cases) {
        const result = await rawExchange(b, to, FETCH_PROTOCOL, c.bytes, { close: c.close })
        assertRefused(result, c.code, 'fetch', c.name)
      }
      assert.equal(source.reads, 0, 'no malformed request reached the source')

      // still serving, on the same connection and on a new one
      const client = new FetchClient(b)
      const got = await collect(client.fetch(to, { setId: 1, ids: [chunk.id], rate: 0 }))
      assert.deepEqual(verifyChunk(got[0].id, got[0].compressed, got[0].rawLength), chunk.plain)
      await Promise.all(b.getConnections(a.peerId).map(async c => { await c.close() }))
      assert.equal((await collect(client.fetch(to, { setId: 1, ids: [chunk.id], rate: 0 }))).length, 1)
      // a valid request typed by hand gets the expected frames: chunk, end(count=1)
      const manual = await rawExchange(b, to, FETCH_PROTOCOL, [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, setId: 1, ids: [id], rate: 0 })))], { maxFrame: FETCH_LIMITS.maxChunkFrameBytes })
      assert.equal(manual.error, undefined)
      assert.equal(manual.frames.length, 2)
      assert.equal(manual.frames[0][0], 0x01)
      assert.deepEqual(Array.from(manual.frames[1]), [0, 0, 0, 0, 1])
    })

    it('the manifest and ack services refuse bad requests without crashing and then serve valid ones', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const manifests = new MemoryManifestSource({ agentVersion: 'x', idle: true, sets: [] }, new Map([[1, makeEntries(1, 10)]]))
      const acks: Array<[number, number, string]> = []
      await new ManifestService(a, { source: manifests, allow: allowAll, log: silentLogger }).start()
      await new AckService(a, { sink: { acknowledge: async (s, n, p) => { acks.push([s, n, p]) } }, allow: allowAll, log: silentLogger }).start()
      const to = addrOf(a)

      const manifestCases: Array<{ name: string, bytes: Uint8Array[], code: string, close?: boolean }> = [
        { name: 'invalid JSON', bytes: [frameOf(utf8('{op:list}'))], code: 'FRAME_MALFORMED' },
        { name: 'wrong version', bytes: [frameOf(utf8(JSON.stringify({ v: 0, op: 'list' })))], code: 'UNSUPPORTED_VERSION' },
        { name: 'unknown op', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, op: 'delete-everything' })))], code: 'FRAME_MALFORMED' },
        { name: 'set id 0', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, op: 'entries', setId: 0 })))], code: 'FRAME_MALFORMED' },
        { name: 'set id a string', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, op: 'entries', setId: '1' })))], code: 'FRAME_MALFORMED' },
        { name: 'oversized frame header only', bytes: [new Uint8Array([0, 0x10, 0, 0])], code: 'FRAME_TOO_LARGE', close: false },
        { name: 'oversized frame', bytes: [frameOf(new Uint8Array(MANIFEST_LIMITS.maxRequestBytes + 1).fill(0x20))], code: 'FRAME_TOO_LARGE' }
      ]
      for (const c of manifestCases) {
        assertRefused(await rawExchange(b, to, MANIFEST_PROTOCOL, c.bytes, { close: c.close }), c.code, 'json', `manifest ${c.name}`)
      }
      assert.equal(manifests.manifestCalls + manifests.entriesCalls, 0)

      const ackCases: Array<{ name: string, bytes: Uint8Array[], code: string, close?: boolean }> = [
        { name: 'invalid JSON', bytes: [frameOf(utf8('ack!'))], code: 'FRAME_MALFORMED' },
        { name: 'wrong version', bytes: [frameOf(utf8(JSON.stringify({ v: 2, setId: 1, snapshotId: 1 })))], code: 'UNSUPPORTED_VERSION' },
        { name: 'set id 0', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, setId: 0, snapshotId: 1 })))], code: 'FRAME_MALFORMED' },
        { name: 'fractional snapshot', bytes: [frameOf(utf8(JSON.stringify({ v: WIRE_VERSION, setId: 1, snapshotId: 1.5 })))], code: 'FRAME_MALFORMED' },
        { name: 'oversized frame header only', bytes: [new Uint8Array([0xff, 0xff, 0xff, 0xff])], code: 'FRAME_TOO_LARGE', close: false }
      ]
      for (const c of ackCases) {
        assertRefused(await rawExchange(b, to, ACK_PROTOCOL, c.bytes, { close: c.close }), c.code, 'json', `ack ${c.name}`)
      }
      assert.deepEqual(acks, [])

      assert.equal((await collect(new ManifestClient(b).entries(to, 1))).flat().length, 10)
      await new AckClient(b).ack(to, 1, 2)
      assert.deepEqual(acks, [[1, 2, b.peerId.toString()]])
    })
  })

  describe('cut and short transfers', () => {
    it('a connection aborted mid-fetch makes the client throw; a later fetch on a fresh connection succeeds', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const chunks = Array.from({ length: 24 }, () => makeChunk(randomBytes(256 * 1024)))
      const base = new MapChunkSource(chunks)
      let cutAt = 8
      let cutConnection: Connection | undefined
      const source: ChunkSource = {
        readChunk: async (id) => {
          if (base.reads === cutAt) {
            cutConnection = a.getConnections(b.peerId)[0]
            assert.ok(cutConnection !== undefined)
            cutConnection.abort(new Error('cut by the test'))
          }
          return await base.readChunk(id)
        }
      }
      await new FetchService(a, { source, allow: allowAll, log: silentLogger, clock: systemClock }).start()
      const client = new FetchClient(b)
      const ids = chunks.map(c => c.id)
      const got: FetchedChunk[] = []
      const err = await thrown(async () => {
        for await (const c of client.fetch(addrOf(a), { setId: 1, ids, rate: 0 })) got.push(c)
      })
      assert.ok(err instanceof Error, `the cut surfaced as an error: ${String(err)}`)
      assert.ok(got.length < ids.length, `a short result is never complete: got ${got.length}`)
      assert.ok(got.length <= cutAt)
      for (const c of got) verifyChunk(c.id, c.compressed, c.rawLength)
      await waitFor('the cut connection to be gone on both sides', () =>
        a.getConnections(b.peerId).every(c => c.id !== cutConnection?.id) && b.getConnections(a.peerId).length === 0)

      cutAt = -1
      const again = await collect(client.fetch(addrOf(a), { setId: 1, ids, rate: 0 }))
      assert.equal(again.length, ids.length)
      again.forEach((c, i) => { assert.deepEqual(verifyChunk(c.id, c.compressed, c.rawLength), chunks[i].plain) })
      assert.ok(b.getConnections(a.peerId).every(c => c.id !== cutConnection?.id), 'the second fetch ran on a new connection')
    })

    it('a fetch stream that ends cleanly before the end frame, or with a wrong count, or out of order, is an error', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const chunks = Array.from({ length: 4 }, () => makeChunk(randomBytes(2000)))
      let behaviour: 'short' | 'count' | 'order' | 'empty-end' = 'short'
      // a hand-written, lying fetch server
      await a.handle(FETCH_PROTOCOL, (stream: Stream) => {
        void (async () => {
          const reader = new FrameReader(stream)
          await reader.expect(FETCH_LIMITS.maxRequestBytes, 'request')
          const sendChunk = async (c: Chunk): Promise<void> => {
            const header = new Uint8Array(1 + CHUNK_ID_BYTES + 4)
            header[0] = 0x01
            header.set(c.id, 1)
            new DataView(header.buffer).setUint32(1 + CHUNK_ID_BYTES, c.plain.byteLength, false)
            await writeFrame(stream, Buffer.concat([header, c.compressed]))
          }
          const end = (n: number): Uint8Array => { const f = new Uint8Array(5); new DataView(f.buffer).setUint32(1, n, false); return f }
          if (behaviour === 'short') {
            for (const c of chunks.slice(0, 2)) await sendChunk(c)
          } else if (behaviour === 'count') {
            for (const c of chunks.slice(0, 3)) await sendChunk(c)
            await writeFrame(stream, end(3))
          } else if (behaviour === 'order') {
            await sendChunk(chunks[1])
            await sendChunk(chunks[0])
          } else {
            await writeFrame(stream, end(0))
          }
          await stream.close()
        })().catch(err => { stream.abort(err) })
      })
      const client = new FetchClient(b)
      const ids = chunks.map(c => c.id)
      behaviour = 'short'
      assertHoldfast(await thrown(async () => await collect(client.fetch(addrOf(a), { setId: 1, ids, rate: 0 }))), 'STREAM_ENDED_EARLY')
      behaviour = 'count'
      assertHoldfast(await thrown(async () => await collect(client.fetch(addrOf(a), { setId: 1, ids, rate: 0 }))), 'FRAME_MALFORMED')
      behaviour = 'order'
      assertHoldfast(await thrown(async () => await collect(client.fetch(addrOf(a), { setId: 1, ids, rate: 0 }))), 'FRAME_MALFORMED')
      behaviour = 'empty-end'
      assertHoldfast(await thrown(async () => await collect(client.fetch(addrOf(a), { setId: 1, ids, rate: 0 }))), 'FRAME_MALFORMED')
    })

    it('a manifest entry stream without its final frame, or with a wrong count, is an error', async () => {
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      let behaviour: 'short' | 'count' = 'short'
      await a.handle(MANIFEST_PROTOCOL, (stream: Stream) => {
        void (async () => {
          await new FrameReader(stream).expect(MANIFEST_LIMITS.maxRequestBytes, 'request')
          const page = { v: WIRE_VERSION, entries: [{ f: 'docs', p: Buffer.from('a').toString('base64'), t: 'file', m: 0o100644, mt: '1', s: 0, c: '' }] }
          await writeFrame(stream, utf8(JSON.stringify(page)))
          if (behaviour === 'count') await writeFrame(stream, utf8(JSON.stringify({ v: WIRE_VERSION, done: true, count: 2 })))
          await stream.close()
        })().catch(err => { stream.abort(err) })
      })
      const client = new ManifestClient(b)
      const pages: StagedEntry[][] = []
      assertHoldfast(await thrown(async () => { for await (const p of client.entries(addrOf(a), 1)) pages.push(p) }), 'STREAM_ENDED_EARLY')
      assert.equal(pages.length, 1, 'the page before the cut was delivered, but the set did not complete')
      behaviour = 'count'
      assertHoldfast(await thrown(async () => await collect(client.entries(addrOf(a), 1))), 'FRAME_MALFORMED')
    })
  })

  describe('ack', () => {
    it('delivers (setId, snapshotId, manager peer id) to the sink; a disallowed peer is refused', async () => {
      const fleetKey = newFleetKey()
      const [agent, manager, other] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey), makeNode(fleetKey)])
      const calls: Array<[number, number, string]> = []
      const sink: AckSink = {
        acknowledge: async (setId, snapshotId, remote) => {
          if (setId === 666) throw new HoldfastError('SET_UNKNOWN', 'no such set')
          calls.push([setId, snapshotId, remote])
        }
      }
      await new AckService(agent, { sink, allow: p => p === manager.peerId.toString(), log: silentLogger }).start()

      await new AckClient(manager).ack(addrOf(agent), 12, 34)
      assert.deepEqual(calls, [[12, 34, manager.peerId.toString()]])
      // acks are idempotent on the wire: a repeat is delivered again (the sink decides)
      await new AckClient(manager).ack(addrOf(agent), 12, 34)
      assert.equal(calls.length, 2)

      assertHoldfast(await thrown(async () => { await new AckClient(other).ack(addrOf(agent), 12, 35) }), 'REMOTE_ERROR', 'PEER_NOT_ALLOWED')
      assert.equal(calls.length, 2, 'the sink never saw the refused ack')
      assert.ok(calls.every(c => c[2] !== other.peerId.toString()))

      // a sink failure reaches the manager as a typed remote error
      assertHoldfast(await thrown(async () => { await new AckClient(manager).ack(addrOf(agent), 666, 1) }), 'REMOTE_ERROR', 'SET_UNKNOWN')
      assert.equal(calls.length, 2)
      // and the service still takes the next ack
      await new AckClient(manager).ack(addrOf(agent), 13, 35)
      assert.deepEqual(calls[2], [13, 35, manager.peerId.toString()])
    })
  })

  describe('pacing on the injected clock', () => {
    const KiB = 1024
    const MiB = 1024 * KiB

    /**
     * Fetches `chunks` between two real nodes while the agent's limiter runs on a ManualClock.
     * Time moves (in 5 ms steps) only while the limiter sleeps, so the manual time at the end is
     * what pacing alone cost: dial, Noise and the OS add nothing. Returns the bytes the limiter
     * accounts for (frame and header) and the manual time at first and last receipt.
     */
    async function pacedFetch (chunks: Chunk[], asked: number, ceiling: number): Promise<{ bytes: number, ms: number, first: { bytes: number, ms: number } }> {
      const fleetKey = newFleetKey()
      const [agent, manager] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const clock = new ManualClock(1_000_000)
      await new FetchService(agent, { source: new MapChunkSource(chunks), allow: allowAll, log: silentLogger, clock, maxRate: ceiling }).start()
      const start = clock.now()
      const samples: Array<{ bytes: number, ms: number }> = []
      let bytes = 0
      let done = false
      let failure: unknown
      void (async () => {
        for await (const c of new FetchClient(manager).fetch(addrOf(agent), { setId: 1, ids: chunks.map(c => c.id), rate: asked })) {
          // what the agent's limiter charges per chunk: type, id, rawLength, data and the 4-byte length
          bytes += 1 + CHUNK_ID_BYTES + 4 + c.compressed.byteLength + 4
          samples.push({ bytes, ms: clock.now() - start })
        }
      })().then(() => { done = true }, (err: unknown) => { failure = err; done = true })
      // bounded in wall time and in steps; waits on real I/O, never on a fixed sleep
      const wallUntil = Date.now() + 60_000
      for (let steps = 0; !done; steps++) {
        assert.ok(Date.now() < wallUntil && steps < 200_000, `paced fetch did not finish (manual ${clock.now() - start} ms, ${bytes} B)`)
        if (clock.pendingSleepers > 0) await clock.advance(5)
        else await new Promise(resolve => setTimeout(resolve, 1))
      }
      if (failure !== undefined) throw failure
      const first = samples[0]
      const last = samples[samples.length - 1]
      assert.ok(first !== undefined && last !== undefined && samples.length === chunks.length)
      return { bytes, ms: last.ms, first }
    }

    function assertRate (got: { bytes: number, ms: number, first: { bytes: number, ms: number } }, rate: number, what: string): void {
      const overall = got.bytes / (got.ms / 1000)
      assert.ok(Math.abs(overall - rate) <= rate * 0.05, `${what}: ${got.bytes} B in ${got.ms} manual ms = ${Math.round(overall)} B/s, expected ${rate} ±5%`)
      // after the first receipt too: a front-loaded burst would show here
      const steady = (got.bytes - got.first.bytes) / ((got.ms - got.first.ms) / 1000)
      assert.ok(Math.abs(steady - rate) <= rate * 0.05, `${what}: after the first receipt ${Math.round(steady)} B/s, expected ${rate} ±5%`)
    }

    // incompressible, so the bytes on the wire are the chunk bytes
    const chunks = Array.from({ length: 48 }, () => makeChunk(randomBytes(64 * KiB)))

    it('sends at the rate the manager asks, within 5% of manual time', async () => {
      assertRate(await pacedFetch(chunks, 1 * MiB, 0), 1 * MiB, 'asked 1 MiB/s, no ceiling')
    })

    it('a manager asking for more than the agent\'s ceiling (or for unpaced) gets the ceiling', async () => {
      const ceiling = 768 * KiB
      assertRate(await pacedFetch(chunks, 4 * MiB, ceiling), ceiling, 'asked 4 MiB/s, ceiling 768 KiB/s')
      assertRate(await pacedFetch(chunks, 0, ceiling), ceiling, 'asked unpaced, ceiling 768 KiB/s')
      // below the ceiling the manager's rate holds
      assertRate(await pacedFetch(chunks, 512 * KiB, ceiling), 512 * KiB, 'asked 512 KiB/s, ceiling 768 KiB/s')
    })
  })

  describe('a rate changed in the middle of a batch', () => {
    const KiB = 1024
    /**
     * The manager's share rises (another pull ended) one second into a batch that would take
     * twelve at the old rate: the new rate reaches the agent on the open stream and the rest
     * comes at it, not at the old rate until the next batch. Real time: what is measured is how
     * soon the agent follows, which is wall time.
     */
    it('the agent follows a raised rate within a fraction of a second', async function () {
      this.timeout(60_000)
      const fleetKey = newFleetKey()
      const [agent, manager] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const chunks = Array.from({ length: 48 }, () => makeChunk(randomBytes(64 * KiB)))
      await new FetchService(agent, { source: new MapChunkSource(chunks), allow: allowAll, log: silentLogger, clock: systemClock }).start()
      let rate = 256 * KiB
      const raised = 1024 * KiB
      const t0 = Date.now()
      const raise = setTimeout(() => { rate = raised }, 1_000)
      const receipts: Array<{ at: number, bytes: number }> = []
      let bytes = 0
      try {
        for await (const c of new FetchClient(manager).fetch(addrOf(agent), { setId: 1, ids: chunks.map(c => c.id), rate }, { rate: { current: () => rate, clock: systemClock } })) {
          bytes += 1 + CHUNK_ID_BYTES + 4 + c.compressed.byteLength + 4
          receipts.push({ at: Date.now() - t0, bytes })
        }
      } finally {
        clearTimeout(raise)
      }
      assert.equal(receipts.length, chunks.length)
      // from half a second after the raise to the end: the raised rate, ±10 %
      const from = receipts.find(r => r.at >= 1_500)
      const last = receipts[receipts.length - 1]
      assert.ok(from !== undefined && last.at > from.at, `the batch ended ${last.at} ms in, before the raise could show`)
      const after = (last.bytes - from.bytes) / ((last.at - from.at) / 1000)
      assert.ok(Math.abs(after / raised - 1) <= 0.1, `after the raise ${Math.round(after)} B/s, expected ${raised} ±10 %`)
    })
  })

  describe('bulk transfer', () => {
    it('moves 1 GiB of chunks through a fleet-protected connection, every byte checked', async function () {
      this.timeout(300_000)
      const fleetKey = newFleetKey()
      const [a, b] = await Promise.all([makeNode(fleetKey), makeNode(fleetKey)])
      const CHUNK = 4 * 1024 * 1024
      const COUNT = 256 // 256 x 4 MiB = 1 GiB of plaintext, and about as much compressed (random data)
      const distinct = Array.from({ length: 4 }, () => makeChunk(randomBytes(CHUNK)))
      for (const c of distinct) assert.ok(c.compressed.byteLength + 1 + CHUNK_ID_BYTES + 4 <= FETCH_LIMITS.maxChunkFrameBytes)
      const senderHash = createHash('sha256')
      let sentBytes = 0
      const base = new MapChunkSource(distinct)
      const source: ChunkSource = {
        readChunk: async (id) => {
          const c = await base.readChunk(id)
          if (c !== null) { senderHash.update(c.compressed); sentBytes += c.compressed.byteLength }
          return c
        }
      }
      await new FetchService(a, { source, allow: allowAll, log: silentLogger, clock: systemClock }).start()
      // a pseudo-random order of the distinct chunks, so a reordering would change the hash
      const ids = Array.from({ length: COUNT }, (_, i) => distinct[(i * 7 + (i >> 3)) % distinct.length].id)
      const expectedHash = createHash('sha256')
      let expectedBytes = 0
      for (const id of ids) {
        const c = distinct.find(d => Buffer.from(d.id).equals(Buffer.from(id)))
        assert.ok(c !== undefined)
        expectedHash.update(c.compressed)
        expectedBytes += c.compressed.byteLength
      }

      const receiverHash = createHash('sha256')
      let receivedBytes = 0
      let plainBytes = 0
      let n = 0
      const t0 = process.hrtime.bigint()
      for await (const c of new FetchClient(b).fetch(addrOf(a), { setId: 1, ids, rate: 0 })) {
        assert.deepEqual(Buffer.from(c.id), Buffer.from(ids[n]))
        receiverHash.update(c.compressed)
        receivedBytes += c.compressed.byteLength
        plainBytes += verifyChunk(c.id, c.compressed, c.rawLength).byteLength
        n++
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9
      assert.equal(n, COUNT)
      assert.equal(plainBytes, COUNT * CHUNK)
      assert.ok(receivedBytes >= 1024 * 1024 * 1024, `at least 1 GiB on the wire, got ${receivedBytes}`)
      assert.equal(receivedBytes, sentBytes)
      assert.equal(receivedBytes, expectedBytes)
      const received = receiverHash.digest('hex')
      assert.equal(received, senderHash.digest('hex'), 'SHA-256 of everything received equals that of everything sent')
      assert.equal(received, expectedHash.digest('hex'))
      // the figure for the report (both ends share one process and two cores)
      console.log(`      1 GiB fetch: ${(receivedBytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(1)} s = ${(receivedBytes / 1e6 / seconds).toFixed(0)} MB/s (chunks verified as received)`)
    })
  })
})
