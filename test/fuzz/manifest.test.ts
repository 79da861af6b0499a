/**
 * Fuzz: /holdfast/manifest/1. The manager's client reads mutated list replies and entry
 * pages; the agent's service reads mutated requests; entryFromWire reads mutated wire
 * entries. Every outcome is a value or a typed error; entries round-trip through the wire form.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import type { Multiaddr } from '@multiformats/multiaddr'
import { entryFromWire, entryToWire, ManifestClient, ManifestService, MANIFEST_LIMITS, MANIFEST_PROTOCOL } from '../../src/protocols/manifest.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { fuzz, fuzzAsync, mutatedJson, mutatedValue, randomBytes } from './harness.js'
import { FakeHost, pieces } from './fake-stream.js'
import { assertTypedError, framed, json } from './wire.js'
import { setSummary, stagedEntry } from './arbitraries.js'

const noAddrs: Multiaddr[] = []
const cuts = fc.array(fc.integer({ min: 1, max: 512 }), { maxLength: 4 })

const wireEntry = stagedEntry.map(e => entryToWire(e) as unknown)
const listReply = fc.record({ v: fc.constant(1), agentVersion: fc.string({ maxLength: 10 }), name: fc.string({ maxLength: 10 }), idle: fc.boolean(), sets: fc.array(setSummary, { maxLength: 4 }) })

/** A valid entries exchange: pages then the done frame with the right count. */
const entryReplies = fc.array(fc.array(wireEntry, { maxLength: 3 }), { maxLength: 3 }).map(pages => [
  ...pages.map(entries => ({ v: 1, entries })),
  { v: 1, done: true, count: pages.reduce((a, p) => a + p.length, 0) }
])

describe('fuzz: manifest protocol', () => {
  fuzz('manifest: entry round trip (entryToWire → JSON → entryFromWire)', stagedEntry, e => {
    assert.deepEqual(entryFromWire(JSON.parse(JSON.stringify(entryToWire(e)))), e)
  })

  fuzz('manifest: entryFromWire on mutated wire entries', mutatedValue(wireEntry), value => {
    const e = entryFromWire(value)
    assert.ok(e.path.byteLength > 0 && e.chunks.byteLength % 32 === 0 && e.chunks.byteLength <= MANIFEST_LIMITS.maxChunksPerEntry * 32)
  }, 2)

  fuzzAsync('manifest: client reads mutated list replies', fc.tuple(fc.oneof(mutatedJson(listReply), randomBytes), cuts), async ([reply, sizes]) => {
    const host = new FakeHost()
    host.replies = pieces(framed([reply]), sizes)
    const m = await new ManifestClient(host).list(noAddrs, { timeoutMs: 10_000 })
    assert.equal(typeof m.idle, 'boolean')
    assert.ok(m.sets.length <= MANIFEST_LIMITS.maxSetsPerList)
  }, 2)

  fuzzAsync('manifest: client reads mutated entry pages', fc.tuple(entryReplies.chain(frames => fc.tuple(...frames.map(f => fc.oneof({ weight: 3, arbitrary: fc.constant(json(f)) }, { weight: 1, arbitrary: mutatedJson(fc.constant(f)) })))), cuts), async ([frames, sizes]) => {
    const host = new FakeHost()
    host.replies = pieces(framed(frames), sizes)
    let n = 0
    for await (const page of new ManifestClient(host).entries(noAddrs, 1, { timeoutMs: 10_000 })) {
      n += page.length
      assert.ok(n <= 9, 'more entries than were sent')
    }
  }, 2)

  fuzzAsync('manifest: service reads mutated requests', fc.tuple(fc.oneof(mutatedJson(fc.oneof(fc.constant({ v: 1, op: 'list' }), fc.record({ v: fc.constant(1), op: fc.constant('entries'), setId: fc.integer({ min: 0, max: 3 }) }))), randomBytes), cuts), async ([request, sizes]) => {
    const host = new FakeHost()
    const service = new ManifestService(host, {
      allow: () => true,
      log: silentLogger,
      source: {
        manifest: () => ({ agentVersion: '0.1.0', idle: true, sets: [{ id: 1, sealedAt: 1, entries: 1, chunks: 0, rawBytes: 0, storedBytes: 0 }] }),
        entries: setId => {
          if (setId !== 1) throw new HoldfastError('SET_UNKNOWN', `no set ${setId}`)
          return [{ folder: 'f', path: new Uint8Array([0x61]), type: 'dir', mode: 0o755, mtimeNs: 1n, size: 0, chunks: new Uint8Array(0) }]
        }
      }
    })
    await service.start()
    const stream = await host.inbound(MANIFEST_PROTOCOL, pieces(framed([request]), sizes))
    assertTypedError(stream.output())
  }, 2)
})
