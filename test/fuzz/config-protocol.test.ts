/**
 * Fuzz: /holdfast/config/1. The agent's service reads mutated config documents (the sink
 * applies nothing: the decoders are what is under test); the manager's client reads mutated
 * replies; the settings decoder alone reads mutated settings. Every outcome is a value or a
 * typed error, and a document the service passes on is one decodeCentralSettings accepts.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import type { Multiaddr } from '@multiformats/multiaddr'
import { ConfigClient, ConfigService, CONFIG_PROTOCOL } from '../../src/protocols/config.js'
import { decodeCentralSettings, type VersionedSettings } from '../../src/model/central-settings.js'
import { silentLogger } from '../../src/util/log.js'
import { fuzz, fuzzAsync, mutatedJson, randomBytes } from './harness.js'
import { FakeHost, pieces } from './fake-stream.js'
import { assertTypedError, framed } from './wire.js'

const noAddrs: Multiaddr[] = []
const cuts = fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 3 })

const folder = fc.record({ path: fc.constantFrom('/srv/a', '/home/b', 'rel', ''), name: fc.constantFrom('a', 'b/c', '..'), ignore: fc.array(fc.constantFrom('*.tmp', '~$*'), { maxLength: 2 }) }, { requiredKeys: ['path'] })
const settings = fc.record({
  folders: fc.array(fc.oneof(folder, fc.constant('/srv/plain')), { maxLength: 3 }),
  folderRule: fc.constantFrom('homes:uid>=1000', 'homes:uid>=', 'all'),
  settleSeconds: fc.oneof(fc.nat({ max: 100 }), fc.double()),
  scanIntervalSeconds: fc.nat({ max: 100_000 }),
  spoolCapBytes: fc.nat(),
  uploadWindows: fc.constantFrom('', '22:00-06:00', 'Mon-Fri 18:00-08:00', '25:00-26:00'),
  workers: fc.nat({ max: 8 }),
  restoreDir: fc.constant('/tmp/elsewhere')
}, { requiredKeys: [] })

describe('fuzz: config protocol', () => {
  fuzzAsync('config: service reads mutated documents', fc.tuple(fc.oneof(mutatedJson(fc.record({ v: fc.constant(1), version: fc.nat({ max: 5 }), settings })), randomBytes), cuts), async ([message, sizes]) => {
    const host = new FakeHost()
    let got: VersionedSettings | undefined
    await new ConfigService(host, { allow: () => true, log: silentLogger, sink: { apply: async (document) => { got = document; return document.version } } }).start()
    const stream = await host.inbound(CONFIG_PROTOCOL, pieces(framed([message]), sizes))
    assertTypedError(stream.output())
    if (got !== undefined) {
      assert.ok(Number.isSafeInteger(got.version) && got.version >= 1)
      assert.deepEqual(decodeCentralSettings(got.settings), got.settings)
    }
  }, 3)

  fuzzAsync('config: client reads mutated replies', fc.tuple(fc.oneof(mutatedJson(fc.oneof(fc.constant({ v: 1, applied: 3 }), fc.constant({ v: 1, error: { code: 'CONFIG_REFUSED', message: 'folder /x does not exist here' } }))), randomBytes), cuts), async ([reply, sizes]) => {
    const host = new FakeHost()
    host.replies = pieces(framed([reply]), sizes)
    await new ConfigClient(host).push(noAddrs, { version: 3, settings: {} })
  }, 2)

  fuzz('config: settings decoder reads mutated settings', mutatedJson(settings), bytes => {
    let value: unknown
    try { value = JSON.parse(Buffer.from(bytes).toString('utf8')) } catch { return }
    decodeCentralSettings(value)
  }, 2)
})
