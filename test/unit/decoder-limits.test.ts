/**
 * Regressions found by the fuzz layer (test/fuzz) and the limits issue 10 asks for: each
 * length a sender declares is checked against its maximum before anything is allocated by
 * it, and hostile values come back as typed errors, never a TypeError.
 */
import { strict as assert } from 'node:assert'
import type { Multiaddr } from '@multiformats/multiaddr'
import { chunkId, compressChunk, decompressChunk, MAX_CHUNK_BYTES, verifyChunk } from '../../src/codec/chunk-codec.js'
import { decodeJson } from '../../src/protocols/exchange.js'
import { FetchClient } from '../../src/protocols/fetch.js'
import { RestoreService, RESTORE_PROTOCOL } from '../../src/protocols/restore.js'
import { entryToWire } from '../../src/protocols/manifest.js'
import { peerFromRecord } from '../../src/node/discovery.js'
import { decodeJoinToken, encodeJoinToken } from '../../src/node/fleet.js'
import { parseConfigText } from '../../src/config/config.js'
import { silentLogger } from '../../src/util/log.js'
import { FakeHost } from '../fuzz/fake-stream.js'
import { framed, framesOf, json } from '../fuzz/wire.js'
import { holdfastCode } from './helpers.js'

const MiB = 1024 * 1024
const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const KEY = 'ab'.repeat(32)

function chunkFrame (kind: number, id: Uint8Array, rawLength: number, data: Uint8Array): Uint8Array {
  const f = new Uint8Array(37 + data.byteLength)
  f[0] = kind
  f.set(id, 1)
  new DataView(f.buffer).setUint32(33, rawLength, false)
  f.set(data, 37)
  return f
}

describe('decoder limits (fuzz regressions)', () => {
  it('a zstd bomb that claims 4 GiB is refused before it is decompressed', () => {
    // 64 MiB of zeros in a few KiB: before the fix this returned a 64 MiB buffer
    const bomb = compressChunk(new Uint8Array(64 * MiB))
    assert.ok(bomb.byteLength < 64 * 1024)
    const before = process.memoryUsage().arrayBuffers
    assert.throws(() => decompressChunk(bomb, 0xffffffff), holdfastCode('CHUNK_TOO_LARGE'))
    assert.ok(process.memoryUsage().arrayBuffers - before < 8 * MiB, 'nothing the size of the claim was allocated')
    assert.throws(() => verifyChunk(chunkId(new Uint8Array(0)), bomb, MAX_CHUNK_BYTES + 1), holdfastCode('CHUNK_TOO_LARGE'))
    // the maximum itself is a chunk (the bomb is larger than it: refused by zstd's bound)
    assert.throws(() => decompressChunk(bomb, MAX_CHUNK_BYTES), holdfastCode('CHUNK_HASH_MISMATCH'))
    const max = new Uint8Array(MAX_CHUNK_BYTES)
    assert.equal(verifyChunk(chunkId(max), compressChunk(max), MAX_CHUNK_BYTES).byteLength, MAX_CHUNK_BYTES)
  })

  it('the fetch client refuses a chunk frame that claims more than a chunk can hold', async () => {
    const id = chunkId(new Uint8Array([1]))
    const host = new FakeHost()
    host.replies = [framed([chunkFrame(0x01, id, MAX_CHUNK_BYTES + 1, compressChunk(new Uint8Array([1]))), new Uint8Array([0, 0, 0, 0, 1])])]
    const got: number[] = []
    const noAddrs: Multiaddr[] = []
    await assert.rejects(async () => {
      for await (const c of new FetchClient(host).fetch(noAddrs, { setId: 1, ids: [id], rate: 0 }, { timeoutMs: 10_000 })) got.push(c.rawLength)
    }, holdfastCode('CHUNK_TOO_LARGE'))
    assert.deepEqual(got, [], 'the chunk was not handed on')
  })

  it('a restore push whose chunk claims 4 GiB fails the push with CHUNK_TOO_LARGE', async () => {
    const plain = new Uint8Array([1, 2, 3])
    const id = chunkId(plain)
    const data = compressChunk(plain)
    const host = new FakeHost()
    let asked = 0
    await new RestoreService(host, {
      allow: () => true,
      log: silentLogger,
      target: {
        open: async () => ({
          add: async (e, chunk) => { asked++; await chunk(0, e.chunks.subarray(0, 32)) },
          finish: () => ({ files: 1, dirs: 0, symlinks: 0, other: 0, bytes: 3, errors: [] }),
          errors: 0
        })
      }
    }).start()
    const entry = { folder: 'f', path: new Uint8Array([0x61]), type: 'file' as const, mode: 0o644, mtimeNs: 1n, size: 3, chunks: id }
    const stream = await host.inbound(RESTORE_PROTOCOL, [framed([
      json({ v: 1, restoreId: 'r', label: 'x', overwrite: false }),
      new Uint8Array([1, ...json({ v: 1, e: entryToWire(entry), d: true })]),
      chunkFrame(0x02, id, 0xffffffff, data),
      new Uint8Array([0, ...json({ v: 1, entries: 1, chunks: 1, bytes: data.byteLength })])
    ])])
    assert.equal(asked, 1)
    const frames = framesOf(stream.output())
    const last = JSON.parse(Buffer.from(frames[frames.length - 1]).toString()) as { error?: { code?: string } }
    assert.equal(last.error?.code, 'CHUNK_TOO_LARGE')
  })

  it('JSON whose version or error fields trap String() gives a typed error, not a TypeError', () => {
    const trap = { toString: 1, valueOf: 1 }
    assert.throws(() => decodeJson(json({ v: trap }), r => r), holdfastCode('UNSUPPORTED_VERSION'))
    assert.throws(() => decodeJson(json({ v: 1, error: { code: trap, message: trap } }), r => r), holdfastCode('REMOTE_ERROR'))
    assert.throws(() => decodeJson(json({ v: 1, error: { code: 'X'.repeat(100_000), message: 'm' } }), r => r), (err: unknown) => {
      holdfastCode('REMOTE_ERROR')(err)
      return (err as Error).message.length < 6000
    })
  })

  describe('mDNS records are checked field by field', () => {
    const SELF = { peerId: '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', fleetTag: '0011223344556677' }
    const good = { txt: { peer: PEER, role: 'agent', pv: '1', ver: '0.1.0', name: 'laptop', fleet: SELF.fleetTag, port: '4001' }, port: 4001, addresses: ['127.0.0.1'] }
    const with_ = (txt: Record<string, unknown>, rest: Record<string, unknown> = {}): Parameters<typeof peerFromRecord>[0] => ({ ...good, ...rest, txt: { ...good.txt, ...txt } })

    it('a good record gives the peer', () => {
      const r = peerFromRecord(good, SELF)
      assert.ok(r.ok)
      assert.deepEqual([r.peer.peerId, r.peer.role, r.peer.version, r.peer.name, r.peer.addrs.map(String)], [PEER, 'agent', '0.1.0', 'laptop', [`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`]])
    })

    const bad: Array<[string, Parameters<typeof peerFromRecord>[0]]> = [
      ['an empty peer id', with_({ peer: '' })],
      ['a garbage peer id', with_({ peer: 'not-a-peer-id!' })],
      ['a 200-byte peer id', with_({ peer: '1'.repeat(200) })],
      ['a role outside the set', with_({ role: 'root' })],
      ['a version with a control character', with_({ ver: '1\u001b[2J' })],
      ['a name of 300 characters', with_({ name: 'n'.repeat(300) })],
      ['port 0', with_({ port: '0' })],
      ['port 65536', with_({ port: '65536' })],
      ['a port that is not a number', with_({ port: '80x' })],
      ['an address that is not an IP', with_({}, { addresses: ['127.0.0.1', 'evil.example'] })],
      ['no addresses', with_({}, { addresses: [] })]
    ]
    for (const [what, record] of bad) {
      it(`drops a record with ${what}`, () => {
        const r = peerFromRecord(record, SELF)
        assert.equal(r.ok, false)
        assert.equal(!r.ok && r.ignored, false, 'counted as malformed, not as another fleet')
      })
    }

    it('ignores our own record and other fleets\' without calling them malformed', () => {
      for (const r of [peerFromRecord(with_({ peer: SELF.peerId }), SELF), peerFromRecord(with_({ fleet: 'ffffffffffffffff' }), SELF)]) {
        assert.ok(!r.ok && r.ignored)
      }
    })
  })

  it('a join token must name a real peer id and fit in 2 KiB', () => {
    const addrs = ['/ip4/127.0.0.1/tcp/1']
    const good = encodeJoinToken({ secret: KEY, managerPeerId: PEER, addrs })
    assert.deepEqual(decodeJoinToken(good), { secret: KEY, managerPeerId: PEER, addrs })
    assert.throws(() => decodeJoinToken(encodeJoinToken({ secret: KEY, managerPeerId: 'x'.repeat(12), addrs })), holdfastCode('CONFIG_INVALID'))
    assert.throws(() => decodeJoinToken(good + 'A'.repeat(2100)), holdfastCode('CONFIG_INVALID', 'longer than'))
  })

  it('config text over 1 MiB is refused before it is parsed', () => {
    const text = JSON.stringify({ fleetKey: KEY, managers: [PEER], name: 'n'.repeat(2 * MiB) })
    assert.throws(() => parseConfigText(text, '/base'), holdfastCode('CONFIG_INVALID', 'larger than'))
    assert.equal(parseConfigText(JSON.stringify({ fleetKey: KEY, managers: [PEER], dataDir: '/d' }), '/base').fleetKey, KEY)
  })
})
