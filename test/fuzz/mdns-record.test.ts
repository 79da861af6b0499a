/**
 * Fuzz: mDNS records (peerFromRecord). Random and mutated records give a peer whose every
 * field is checked, or are dropped; none throws. Round trip: the TXT record a node publishes
 * gives back its id, role, version, name and port.
 */
import { strict as assert } from 'node:assert'
import { isIP } from 'node:net'
import fc from 'fast-check'
import { peerIdFromString } from '@libp2p/peer-id'
import { peerFromRecord, RECORD_LIMITS } from '../../src/node/discovery.js'
import { fuzz, hostileValue, mutatedValue } from './harness.js'

const SELF = { peerId: '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', fleetTag: '0011223344556677' }
const PEERS = ['12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N']

const record = fc.record({
  txt: fc.record({
    peer: fc.oneof(fc.constantFrom(...PEERS), fc.constant(SELF.peerId), fc.string({ maxLength: 60 }), fc.constant('x'.repeat(200)), fc.constant('')),
    role: fc.constantFrom('agent', 'manager', 'node', 'root', ''),
    pv: fc.constant('1'),
    ver: fc.oneof(fc.string({ maxLength: 10 }), fc.constant('\u0007')),
    name: fc.oneof(fc.string({ maxLength: 300 })),
    fleet: fc.constantFrom(SELF.fleetTag, 'ffffffffffffffff'),
    port: fc.oneof(fc.integer({ min: -5, max: 70_000 }).map(String), fc.constantFrom('', '0', '65535', '65536', '1e3', ' 80', '0x50'))
  }),
  port: fc.integer({ min: -1, max: 70_000 }),
  addresses: fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('fe80::1', 'not-an-ip', '', '198.18.0.999')), { maxLength: 4 }),
  referer: fc.option(fc.record({ address: fc.oneof(fc.ipV4(), fc.string({ maxLength: 10 })) }), { nil: undefined })
})

function checkPeer (view: unknown): void {
  const r = peerFromRecord(view as Parameters<typeof peerFromRecord>[0], SELF)
  if (!r.ok) return
  const p = r.peer
  assert.notEqual(p.peerId, SELF.peerId)
  assert.equal(peerIdFromString(p.peerId).toString(), p.peerId)
  assert.ok(['agent', 'manager', 'node'].includes(p.role))
  assert.ok(p.version.length <= RECORD_LIMITS.maxVersionChars && p.name.length <= RECORD_LIMITS.maxNameChars)
  assert.ok(!/\p{Cc}/u.test(p.version + p.name))
  assert.ok(p.addrs.length >= 1 && p.addrs.length <= RECORD_LIMITS.maxAddrs)
  for (const a of p.addrs) {
    const c = a.getComponents()
    assert.ok(isIP(c[0].value ?? '') !== 0)
    const port = Number(c[1].value)
    assert.ok(Number.isInteger(port) && port >= 1 && port <= 65535)
    assert.equal(c[2].value, p.peerId)
  }
}

describe('fuzz: mDNS records', () => {
  fuzz('mdns record: structured records with bad fields', record, checkPeer, 3)
  fuzz('mdns record: mutated records', mutatedValue(record), checkPeer, 2)
  fuzz('mdns record: anything at all', fc.oneof(hostileValue, fc.record({ txt: fc.dictionary(fc.string({ maxLength: 6 }), hostileValue, { maxKeys: 8 }), port: hostileValue, addresses: hostileValue, referer: hostileValue })), checkPeer)

  fuzz('mdns record: round trip (what a node publishes is what a peer finds)', fc.record({ peer: fc.constantFrom(...PEERS), role: fc.constantFrom('agent', 'manager', 'node'), ver: fc.string({ maxLength: 20 }).filter(s => !/[\p{Cc}\p{Cs}]/u.test(s)), name: fc.string({ maxLength: 60 }).filter(s => !/[\p{Cc}\p{Cs}]/u.test(s)), port: fc.integer({ min: 1, max: 65535 }), addr: fc.ipV4() }), a => {
    const r = peerFromRecord({ txt: { peer: a.peer, role: a.role, pv: '1', ver: a.ver, name: a.name, fleet: SELF.fleetTag, port: String(a.port) }, port: a.port, addresses: [a.addr] }, SELF)
    assert.ok(r.ok, r.ok ? '' : r.reason)
    assert.deepEqual({ id: r.peer.peerId, role: r.peer.role, ver: r.peer.version, name: r.peer.name }, { id: a.peer, role: a.role, ver: a.ver, name: a.name })
    assert.equal(r.peer.addrs[0].toString(), `/ip4/${a.addr}/tcp/${a.port}/p2p/${a.peer}`)
  })
})
