import { strict as assert } from 'node:assert'
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, resolveConfig } from '../../src/config/config.js'
import { HoldfastError } from '../../src/util/errors.js'
import { holdfastCode } from './helpers.js'

const KEY = '0123456789abcdef'.repeat(4)
const BASE = '/srv/holdfast-test'
const MANAGER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

/** A valid base: the fleet key and (an agent needs one) a pinned manager. */
function withKey (extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { fleetKey: KEY, managers: [MANAGER], ...extra }
}

function unknownKey (key: string): (err: unknown) => boolean {
  return (err: unknown) => {
    holdfastCode('CONFIG_UNKNOWN_KEY', `'${key}'`)(err)
    assert.equal((err as HoldfastError).details.key, key)
    return true
  }
}

describe('config', () => {
  describe('resolveConfig', () => {
    it('fills every default for a minimal agent config', () => {
      const c = resolveConfig(withKey(), BASE)
      const dataDir = join(process.env.HOME ?? BASE, '.holdfast', 'agent')
      assert.deepEqual(c, {
        role: 'agent',
        name: hostname(),
        dataDir,
        listen: ['/ip4/0.0.0.0/tcp/0'],
        fleetKey: KEY,
        managers: [MANAGER],
        membership: { autoApprove: true },
        mdns: { enabled: true, queryIntervalSeconds: 30 },
        staticPeers: [],
        adminSocket: join(dataDir, 'admin.sock'),
        admin: {},
        agent: { folders: [], scanIntervalSeconds: 300, settleSeconds: 2, maxUploadBytesPerSecond: 0, workers: 0, spoolCapBytes: 0, diskReserveBytes: 0, watch: 'auto', watchMaxEntries: 50_000, restoreDir: join(dataDir, 'restores'), uploadWindows: '', idleLoadPerCpu: 0.5, idleInputSeconds: 300 },
        manager: { pullIntervalSeconds: 60, bandwidthBytesPerSecond: 1_250_000, maxConcurrentPulls: 4, sliceSeconds: 300, maxAgeHours: 24, maxAgeRateFraction: 0.25, bandwidthProfiles: {}, endpointCaps: {}, uploadWindows: { endpoints: {} }, overdueAfterHours: 48, metrics: { listen: '' }, deploy: { auto: 'none', settings: {} } }
      })
    })

    it('uses the role in the default data dir and keeps given values', () => {
      const c = resolveConfig(withKey({
        role: 'manager',
        name: 'vault',
        listen: ['/ip4/127.0.0.1/tcp/4001'],
        managers: ['12D3KooWabc'],
        mdns: { enabled: false },
        staticPeers: ['/ip4/198.18.0.2/tcp/4001/p2p/12D3KooWxyz'],
        agent: { settleSeconds: 0, workers: 3 },
        manager: { bandwidthBytesPerSecond: 5 }
      }), BASE)
      assert.equal(c.role, 'manager')
      assert.equal(c.name, 'vault')
      assert.equal(c.dataDir, join(process.env.HOME ?? BASE, '.holdfast', 'manager'))
      assert.deepEqual(c.listen, ['/ip4/127.0.0.1/tcp/4001'])
      assert.deepEqual(c.managers, ['12D3KooWabc'])
      assert.deepEqual(c.mdns, { enabled: false, queryIntervalSeconds: 30 }, 'a partial nested object keeps the other defaults')
      assert.deepEqual(c.staticPeers, ['/ip4/198.18.0.2/tcp/4001/p2p/12D3KooWxyz'])
      assert.equal(c.agent.settleSeconds, 0)
      assert.equal(c.agent.workers, 3)
      assert.equal(c.agent.scanIntervalSeconds, 300)
      assert.deepEqual(c.manager, { pullIntervalSeconds: 60, bandwidthBytesPerSecond: 5, maxConcurrentPulls: 4, sliceSeconds: 300, maxAgeHours: 24, maxAgeRateFraction: 0.25, bandwidthProfiles: {}, endpointCaps: {}, uploadWindows: { endpoints: {} }, overdueAfterHours: 48, metrics: { listen: '' }, deploy: { auto: 'none', settings: {} } })
    })

    it('resolves relative dataDir, adminSocket and folder paths against baseDir', () => {
      const c = resolveConfig(withKey({
        dataDir: 'state',
        adminSocket: 'run/admin.sock',
        agent: { folders: ['photos', '../shared/docs', '/abs/music', { path: 'work', name: 'job' }] }
      }), BASE)
      assert.equal(c.dataDir, '/srv/holdfast-test/state')
      assert.equal(c.adminSocket, '/srv/holdfast-test/run/admin.sock')
      assert.deepEqual(c.agent.folders, [
        { path: '/srv/holdfast-test/photos', name: 'photos', ignore: [] },
        { path: '/srv/shared/docs', name: 'docs', ignore: [] },
        { path: '/abs/music', name: 'music', ignore: [] },
        { path: '/srv/holdfast-test/work', name: 'job', ignore: [] }
      ])
    })

    it('puts the admin socket in the data dir by default', () => {
      const c = resolveConfig(withKey({ dataDir: '/var/lib/hf' }), BASE)
      assert.equal(c.adminSocket, '/var/lib/hf/admin.sock')
    })

    it('puts restores pushed by the manager under <dataDir>/restores by default, or agent.restoreDir resolved against baseDir', () => {
      assert.equal(resolveConfig(withKey({ dataDir: '/var/lib/hf' }), BASE).agent.restoreDir, '/var/lib/hf/restores')
      assert.equal(resolveConfig(withKey({ agent: { restoreDir: 'back' } }), BASE).agent.restoreDir, '/srv/holdfast-test/back')
      assert.throws(() => resolveConfig(withKey({ agent: { restoreDir: 7 } }), BASE), (err: unknown) => err instanceof HoldfastError && err.code === 'CONFIG_INVALID')
      assert.throws(() => resolveConfig(withKey({ agent: { restoreDir: '' } }), BASE), (err: unknown) => err instanceof HoldfastError && err.code === 'CONFIG_INVALID')
    })

    it('names the root folder "root"', () => {
      const c = resolveConfig(withKey({ agent: { folders: ['/'] } }), BASE)
      assert.deepEqual(c.agent.folders, [{ path: '/', name: 'root', ignore: [] }])
    })

    it('admin.group: a name or a gid, only with the socket outside the data directory', () => {
      const outside = { dataDir: '/srv/hf/data', adminSocket: '/run/holdfast/admin.sock' }
      assert.deepEqual(resolveConfig(withKey({ ...outside, admin: { group: 'hf-admins' } }), BASE).admin, { group: 'hf-admins' })
      assert.deepEqual(resolveConfig(withKey({ ...outside, admin: { group: 1001 } }), BASE).admin, { group: 1001 })
      assert.deepEqual(resolveConfig(withKey({ ...outside, admin: { group: '1001' } }), BASE).admin, { group: '1001' })
      for (const bad of ['', 'a:b', 'x'.repeat(40), -1, 1.5, true, ['wheel']]) {
        assert.throws(() => resolveConfig(withKey({ ...outside, admin: { group: bad } }), BASE), holdfastCode('CONFIG_INVALID', 'admin.group'), JSON.stringify(bad))
      }
      // the data directory is 0700: a socket in it (the default) or under it cannot be the group's
      assert.throws(() => resolveConfig(withKey({ dataDir: '/srv/hf/data', admin: { group: 'hf-admins' } }), BASE), holdfastCode('CONFIG_INVALID', 'outside the data directory'))
      assert.throws(() => resolveConfig(withKey({ dataDir: '/srv/hf/data', adminSocket: '/srv/hf/data/run/a.sock', admin: { group: 'hf-admins' } }), BASE), holdfastCode('CONFIG_INVALID', 'outside the data directory'))
    })

    it('rejects an unknown top-level key with CONFIG_UNKNOWN_KEY naming it', () => {
      assert.throws(() => resolveConfig(withKey({ fleetkey: KEY }), BASE), unknownKey('fleetkey'))
    })

    it('rejects an unknown nested key with CONFIG_UNKNOWN_KEY naming its full path', () => {
      assert.throws(() => resolveConfig(withKey({ agent: { foldrs: ['/x'] } }), BASE), unknownKey('agent.foldrs'))
      assert.throws(() => resolveConfig(withKey({ mdns: { enable: true } }), BASE), unknownKey('mdns.enable'))
      assert.throws(() => resolveConfig(withKey({ manager: { bandwidth: 1 } }), BASE), unknownKey('manager.bandwidth'))
    })

    it('rejects a config that is not an object', () => {
      for (const value of [null, [], 'agent', 42, undefined]) {
        assert.throws(() => resolveConfig(value, BASE), holdfastCode('CONFIG_INVALID'), String(value))
      }
    })

    it('rejects wrong types with CONFIG_INVALID naming the key', () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ role: 1 }, 'role'],
        [{ name: ['a'] }, 'name'],
        [{ dataDir: 5 }, 'dataDir'],
        [{ listen: '/ip4/0.0.0.0/tcp/0' }, 'listen'],
        [{ listen: [1] }, 'listen'],
        [{ managers: [null] }, 'managers'],
        [{ mdns: true }, 'mdns'],
        [{ mdns: null }, 'mdns'],
        [{ mdns: { enabled: 'yes' } }, 'mdns.enabled'],
        [{ mdns: { queryIntervalSeconds: '30' } }, 'mdns.queryIntervalSeconds'],
        [{ agent: [] }, 'agent'],
        [{ agent: { workers: '4' } }, 'agent.workers'],
        [{ agent: { scanIntervalSeconds: Number.POSITIVE_INFINITY } }, 'agent.scanIntervalSeconds'],
        [{ agent: { settleSeconds: Number.NaN } }, 'agent.settleSeconds'],
        [{ agent: { folders: '/home' } }, 'agent.folders'],
        [{ agent: { folders: [7] } }, 'agent.folders'],
        [{ agent: { folders: [{ name: 'x' }] } }, 'agent.folders'],
        [{ agent: { folders: [{ path: '/x', name: 3 }] } }, 'agent.folders'],
        [{ agent: { folders: [{ path: '/x', exclude: ['*.tmp'] }] } }, 'agent.folders'],
        [{ manager: { pullIntervalSeconds: true } }, 'manager.pullIntervalSeconds'],
        [{ staticPeers: {} }, 'staticPeers']
      ]
      for (const [input, key] of cases) {
        assert.throws(() => resolveConfig(withKey(input), BASE), holdfastCode('CONFIG_INVALID', `${key}`), JSON.stringify(input))
      }
    })

    it('checks scheduler keys at load: windows, profiles, caps, k, fractions', () => {
      const ok = resolveConfig(withKey({ role: 'manager', manager: { maxConcurrentPulls: 2, bandwidthProfiles: { '08:00-18:00': '20Mbit' }, endpointCaps: { laptop: '2MiB/s' }, uploadWindows: { default: 'Mon-Fri 18:00-07:00; Sat-Sun all', endpoints: { laptop: '12:00-13:00' } } }, agent: { uploadWindows: 'all' } }), BASE)
      assert.deepEqual(ok.manager.uploadWindows, { default: 'Mon-Fri 18:00-07:00; Sat-Sun all', endpoints: { laptop: '12:00-13:00' } })
      const cases: Array<[Record<string, unknown>, string, string]> = [
        [{ manager: { uploadWindows: { default: 'Mon-Fry 12:00-13:00' } } }, 'CONFIG_INVALID', 'manager.uploadWindows.default'],
        [{ manager: { uploadWindows: { endpoints: { laptop: '25:00-26:00' } } } }, 'CONFIG_INVALID', 'manager.uploadWindows.endpoints.laptop'],
        [{ manager: { uploadWindows: { endpoints: { laptop: 5 } } } }, 'CONFIG_INVALID', 'manager.uploadWindows.endpoints'],
        [{ manager: { uploadWindows: { weekdays: 'all' } } }, 'CONFIG_UNKNOWN_KEY', 'manager.uploadWindows.weekdays'],
        [{ agent: { uploadWindows: 'sometimes' } }, 'CONFIG_INVALID', 'agent.uploadWindows'],
        [{ manager: { bandwidthProfiles: { '08:00-18:00': '-20Mbit' } } }, 'CONFIG_INVALID', 'manager.bandwidthProfiles'],
        [{ manager: { endpointCaps: { laptop: 'fast' } } }, 'CONFIG_INVALID', 'manager.endpointCaps.laptop'],
        [{ manager: { maxConcurrentPulls: 0 } }, 'CONFIG_INVALID', 'manager.maxConcurrentPulls'],
        [{ manager: { maxConcurrentPulls: 2.5 } }, 'CONFIG_INVALID', 'manager.maxConcurrentPulls'],
        [{ manager: { maxAgeRateFraction: 2 } }, 'CONFIG_INVALID', 'manager.maxAgeRateFraction'],
        [{ manager: { maxAgeHours: -1 } }, 'CONFIG_INVALID', 'manager.maxAgeHours'],
        [{ manager: { overdueAfterHours: -1 } }, 'CONFIG_INVALID', 'manager.overdueAfterHours'],
        [{ manager: { metrics: { listen: 'localhost:9464' } } }, 'CONFIG_INVALID', 'manager.metrics.listen'],
        [{ manager: { metrics: { listen: 9464 } } }, 'CONFIG_INVALID', 'manager.metrics.listen'],
        [{ manager: { deploy: { settings: { restoreDir: '/x' } } } }, 'CONFIG_UNKNOWN_KEY', 'manager.deploy.settings'],
        [{ role: 'node', managers: [] }, 'CONFIG_INVALID', "'managers'"],
        [{ manager: { metrics: { enabled: true } } }, 'CONFIG_UNKNOWN_KEY', 'manager.metrics.enabled']
      ]
      for (const [input, code, key] of cases) {
        assert.throws(() => resolveConfig(withKey(input), BASE), holdfastCode(code as 'CONFIG_INVALID', key), JSON.stringify(input))
      }
    })

    it('rejects a role other than agent or manager', () => {
      assert.throws(() => resolveConfig(withKey({ role: 'boss' }), BASE), holdfastCode('CONFIG_INVALID', 'boss'))
    })

    it('rejects numbers below their minimum', () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ agent: { scanIntervalSeconds: 0 } }, 'agent.scanIntervalSeconds'],
        [{ agent: { settleSeconds: -1 } }, 'agent.settleSeconds'],
        [{ agent: { maxUploadBytesPerSecond: -5 } }, 'agent.maxUploadBytesPerSecond'],
        [{ agent: { workers: -1 } }, 'agent.workers'],
        [{ manager: { pullIntervalSeconds: 0.5 } }, 'manager.pullIntervalSeconds'],
        [{ manager: { bandwidthBytesPerSecond: 0 } }, 'manager.bandwidthBytesPerSecond'],
        [{ mdns: { queryIntervalSeconds: 0 } }, 'mdns.queryIntervalSeconds']
      ]
      for (const [input, key] of cases) {
        assert.throws(() => resolveConfig(withKey(input), BASE), holdfastCode('CONFIG_INVALID', key), JSON.stringify(input))
      }
    })

    it('refuses an agent without a pinned manager (it would serve any key holder); a manager needs none', () => {
      for (const managers of [[], undefined]) {
        assert.throws(() => resolveConfig({ fleetKey: KEY, managers }, BASE), holdfastCode('CONFIG_INVALID', 'managers'), JSON.stringify(managers))
      }
      assert.deepEqual(resolveConfig({ fleetKey: KEY, role: 'manager' }, BASE).managers, [])
      assert.equal(resolveConfig({ fleetKey: KEY, role: 'manager', membership: { autoApprove: false } }, BASE).membership.autoApprove, false)
      assert.throws(() => resolveConfig(withKey({ membership: { autoapprove: true } }), BASE), unknownKey('membership.autoapprove'))
    })

    it('requires a fleetKey of exactly 64 lowercase hex characters', () => {
      assert.throws(() => resolveConfig({}, BASE), holdfastCode('CONFIG_INVALID', 'fleetKey'))
      for (const fleetKey of ['', 'abc', KEY.slice(1), KEY + '0', KEY.toUpperCase(), 'g'.repeat(64), ` ${KEY.slice(1)}`]) {
        assert.throws(() => resolveConfig({ fleetKey }, BASE), holdfastCode('CONFIG_INVALID', 'fleetKey'), fleetKey)
      }
      assert.throws(() => resolveConfig({ fleetKey: 123 }, BASE), holdfastCode('CONFIG_INVALID', 'fleetKey'))
    })

    it('rejects two folders with the same name, and accepts them once renamed', () => {
      const folders = ['/home/alice/docs', '/home/bob/docs']
      assert.throws(() => resolveConfig(withKey({ agent: { folders } }), BASE), holdfastCode('CONFIG_INVALID', "'docs'"))
      assert.throws(() => resolveConfig(withKey({ agent: { folders: ['/a/x', { path: '/b/y', name: 'x' }] } }), BASE), holdfastCode('CONFIG_INVALID', "'x'"))
      const ok = resolveConfig(withKey({ agent: { folders: ['/home/alice/docs', { path: '/home/bob/docs', name: 'bob-docs' }] } }), BASE)
      assert.deepEqual(ok.agent.folders.map(f => f.name), ['docs', 'bob-docs'])
    })

    it('rejects folder names that are not a single path component', () => {
      for (const name of ['a/b', '.', '..', '', 'x'.repeat(256), 'nul\u0000byte']) {
        assert.throws(() => resolveConfig(withKey({ agent: { folders: [{ path: '/data', name }] } }), BASE), holdfastCode('CONFIG_INVALID'), JSON.stringify(name))
      }
    })
  })

  describe('loadConfig', () => {
    let dir: string
    before(() => { dir = mkdtempSync(join(tmpdir(), 'holdfast-config-')) })
    after(() => { rmSync(dir, { recursive: true, force: true }) })

    it('reads a JSON file and resolves relative paths against the file\'s folder', () => {
      const file = join(dir, 'holdfast.json')
      writeFileSync(file, JSON.stringify({ fleetKey: KEY, managers: [MANAGER], dataDir: 'data', agent: { folders: ['docs'] } }), { mode: 0o600 })
      const c = loadConfig(file)
      assert.equal(c.dataDir, join(dir, 'data'))
      assert.deepEqual(c.agent.folders, [{ path: join(dir, 'docs'), name: 'docs', ignore: [] }])
    })

    it('fails with CONFIG_INVALID for a missing file', () => {
      assert.throws(() => loadConfig(join(dir, 'does-not-exist.json')), holdfastCode('CONFIG_INVALID', 'does-not-exist.json'))
    })

    it('fails with CONFIG_INVALID for a file that is not JSON', () => {
      const file = join(dir, 'broken.json')
      writeFileSync(file, '{ "fleetKey": "abc", }', { mode: 0o600 })
      assert.throws(() => loadConfig(file), holdfastCode('CONFIG_INVALID', 'not valid JSON'))
    })

    it('reports unknown keys from a file with CONFIG_UNKNOWN_KEY', () => {
      const file = join(dir, 'typo.json')
      writeFileSync(file, JSON.stringify({ fleetKey: KEY, agnet: {} }), { mode: 0o600 })
      assert.throws(() => loadConfig(file), unknownKey('agnet'))
    })

    it('refuses a config file readable or writable by group or others (it holds the fleet key), naming chmod 600', () => {
      const file = join(dir, 'loose.json')
      writeFileSync(file, JSON.stringify({ fleetKey: KEY, managers: [MANAGER], dataDir: 'data' }), { mode: 0o600 })
      assert.equal(loadConfig(file).fleetKey, KEY)
      for (const loose of [0o644, 0o640, 0o604, 0o660, 0o606, 0o610]) {
        chmodSync(file, loose)
        assert.throws(() => loadConfig(file), holdfastCode('CONFIG_INVALID', `chmod 600 ${file}`), `mode ${loose.toString(8)}`)
        assert.equal(statSync(file).mode & 0o777, loose, 'left as it was')
      }
      chmodSync(file, 0o400)
      assert.equal(loadConfig(file).fleetKey, KEY, 'owner-only read is fine')
    })
  })
})
