/**
 * Fuzz: /holdfast/restore/1. The agent's service reads a mutated push (header, entry frames,
 * chunk frames with any rawLength, end frame); the manager's client reads mutated header
 * answers and summaries. Every outcome is a value or a typed error, and no chunk handed to
 * the writer claims more than a chunk can hold.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import type { Multiaddr } from '@multiformats/multiaddr'
import { RestoreClient, RestoreService, RESTORE_PROTOCOL, RESTORE_LIMITS, type RestoreWriter } from '../../src/protocols/restore.js'
import { entryToWire } from '../../src/protocols/manifest.js'
import { chunkId, compressChunk, MAX_CHUNK_BYTES } from '../../src/codec/chunk-codec.js'
import { CHUNK_ID_BYTES, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { editBytes, fuzzAsync, mutatedJson, randomBytes } from './harness.js'
import { FakeHost, pieces } from './fake-stream.js'
import { assertTypedError, framed, json } from './wire.js'

const noAddrs: Multiaddr[] = []
const cuts = fc.array(fc.integer({ min: 1, max: 256 }), { maxLength: 3 })

function kind (k: number, payload: Uint8Array): Uint8Array {
  return new Uint8Array(Buffer.concat([Buffer.from([k]), payload]))
}

function chunkFrame (id: Uint8Array, raw: number, data: Uint8Array): Uint8Array {
  const f = new Uint8Array(37 + data.byteLength)
  f[0] = 0x02
  f.set(id, 1)
  new DataView(f.buffer).setUint32(33, raw, false)
  f.set(data, 37)
  return f
}

/** A valid push of one file of 1..2 chunks, as frame payloads, with rawLength sometimes a lie. */
const push = fc.tuple(
  fc.array(fc.uint8Array({ maxLength: 48 }), { minLength: 1, maxLength: 2 }),
  fc.array(fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }), { minLength: 2, maxLength: 2 }),
  fc.boolean()
).map(([plains, lies, overwrite]) => {
  const ids = plains.map(p => chunkId(p))
  const entry: StagedEntry = { folder: 'f', path: new Uint8Array([0x61]), type: 'file', mode: 0o644, mtimeNs: 1n, size: plains.reduce((a, p) => a + p.byteLength, 0), chunks: new Uint8Array(Buffer.concat(ids)) }
  const compressed = plains.map(p => compressChunk(p))
  const frames: Uint8Array[] = [
    json({ v: 1, restoreId: 'r1', label: 'fuzz', overwrite }),
    kind(0x01, json({ v: 1, e: entryToWire(entry), d: true })),
    ...compressed.map((c, i) => chunkFrame(ids[i], lies[i] ?? plains[i].byteLength, c)),
    kind(0x00, json({ v: 1, entries: 1, chunks: ids.length, bytes: compressed.reduce((a, c) => a + c.byteLength, 0) }))
  ]
  return frames
})

const edits = fc.array(fc.record({ kind: fc.constantFrom('flip' as const, 'insert' as const, 'delete' as const, 'truncate' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 2 })

/** A writer like the agent's: a chunk that fails spoils its file (counted), not the push. */
function recordingWriter (): RestoreWriter {
  let errors = 0
  let files = 0
  return {
    add: async (e, chunk) => {
      if (e.type !== 'file') return
      try {
        for (let i = 0; i < e.chunks.byteLength / CHUNK_ID_BYTES; i++) {
          const plain = await chunk(i, e.chunks.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES))
          assert.ok(plain.byteLength <= MAX_CHUNK_BYTES)
        }
        files++
      } catch (err) {
        if (!(err instanceof HoldfastError)) throw err
        errors++
      }
    },
    finish: () => ({ files, dirs: 0, symlinks: 0, other: 0, bytes: 0, errors: [] }),
    get errors () { return errors }
  }
}

describe('fuzz: restore protocol', () => {
  fuzzAsync('restore: service reads mutated pushes', fc.tuple(push, fc.array(fc.tuple(fc.nat(), edits), { maxLength: 2 }), fc.option(randomBytes, { nil: undefined }), cuts), async ([frames, frameEdits, junk, sizes]) => {
    for (const [which, e] of frameEdits) frames[which % frames.length] = editBytes(frames[which % frames.length], e)
    if (junk !== undefined) frames.splice(1 + (junk.byteLength % frames.length), 0, junk)
    const host = new FakeHost()
    await new RestoreService(host, { allow: () => true, log: silentLogger, target: { open: async () => recordingWriter() } }).start()
    const stream = await host.inbound(RESTORE_PROTOCOL, pieces(framed(frames), sizes))
    assertTypedError(stream.output())
  }, 3)

  fuzzAsync('restore: client reads mutated answers and summaries', fc.tuple(
    fc.oneof(mutatedJson(fc.constant({ v: 1, ok: true })), randomBytes),
    fc.oneof(mutatedJson(fc.record({ v: fc.constant(1), files: fc.nat(), dirs: fc.nat(), symlinks: fc.nat(), other: fc.nat(), bytes: fc.nat(), errorsOmitted: fc.nat(), errors: fc.array(fc.record({ path: fc.string(), code: fc.string(), message: fc.string() }), { maxLength: 3 }) })), randomBytes),
    cuts
  ), async ([answer, summary, sizes]) => {
    const host = new FakeHost()
    host.replies = pieces(framed([answer, summary]), sizes)
    const s = await new RestoreClient(host).push(noAddrs, { restoreId: 'r1', label: 'fuzz', overwrite: false }, { entries: () => [], chunk: () => { throw new HoldfastError('CHUNK_MISSING', 'none') } }, { timeoutMs: 10_000 })
    assert.ok(s.errors.length <= RESTORE_LIMITS.maxSummaryErrors)
  }, 2)
})
