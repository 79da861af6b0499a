/**
 * Fuzz: config files from their JSON text. Random text and mutated valid configs resolve to
 * a config or throw CONFIG_INVALID / CONFIG_UNKNOWN_KEY. Round trip: a resolved config,
 * written as JSON and read back, is the same config.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import { parseConfigText } from '../../src/config/config.js'
import { fuzz, mutatedJson } from './harness.js'

const KEY = 'a'.repeat(64)
const validConfig = fc.record({
  role: fc.constantFrom('agent', 'manager'),
  name: fc.string({ maxLength: 12 }),
  dataDir: fc.constantFrom('/var/lib/holdfast', 'data', '/tmp/x'),
  fleetKey: fc.constant(KEY),
  managers: fc.array(fc.constant('12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'), { maxLength: 1 }),
  mdns: fc.record({ enabled: fc.boolean(), queryIntervalSeconds: fc.integer({ min: 1, max: 100 }) }),
  agent: fc.record({
    folders: fc.array(fc.oneof(fc.constantFrom('/home/a/Documents', 'rel'), fc.record({ path: fc.constant('/srv/p'), name: fc.constantFrom('p', 'q'), ignore: fc.array(fc.string({ maxLength: 5 }), { maxLength: 2 }) })), { maxLength: 2 }),
    settleSeconds: fc.nat({ max: 10 }),
    watch: fc.constantFrom('auto', 'events', 'scan')
  }),
  manager: fc.record({ pullIntervalSeconds: fc.integer({ min: 1, max: 100 }) })
}, { requiredKeys: ['fleetKey'] })

describe('fuzz: config', () => {
  fuzz('config: random text', fc.oneof(fc.string({ maxLength: 100 }), fc.json({ maxDepth: 3 })), text => { parseConfigText(text, '/base') })

  fuzz('config: mutated valid configs', mutatedJson(validConfig), bytes => {
    const c = parseConfigText(Buffer.from(bytes).toString('utf8'), '/base')
    assert.match(c.fleetKey, /^[0-9a-f]{64}$/)
    assert.ok(c.role === 'agent' || c.role === 'manager')
  }, 3)

  fuzz('config: round trip (resolved → JSON → resolved)', validConfig, raw => {
    let c
    try { c = parseConfigText(JSON.stringify(raw), '/base') } catch { return } // two folders of one name: refused, fine
    assert.deepEqual(parseConfigText(JSON.stringify(c), '/elsewhere'), c)
  })
})
