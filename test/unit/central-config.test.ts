/**
 * Central configuration without a network: the settings decoder, the folder rule, the merge
 * of agent.json with central settings (local-only keys stay the endpoint's), the config
 * protocol's message decoders, and the manager's versioned store with its history.
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { agentConfigFrom, decodeCentralSettings, mergeSettings } from '../../src/model/central-settings.js'
import { expandFolderRule, parseFolderRule } from '../../src/model/folder-rule.js'
import { decodeConfigReply, decodeConfigRequest } from '../../src/protocols/config.js'
import { CentralConfigStore } from '../../src/roles/manager/central-config.js'
import { holdfastCode } from './helpers.js'

const KEY = '0123456789abcdef'.repeat(4)
const MANAGER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

describe('central configuration', () => {
  let root = ''
  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-central-')) })
  afterEach(() => { rmSync(root, { recursive: true, force: true }) })

  describe('decodeCentralSettings', () => {
    it('takes the central keys with their types', () => {
      assert.deepEqual(decodeCentralSettings({ settleSeconds: 5, folders: [{ path: '/srv/a' }], folderRule: 'homes:uid>=1000', uploadWindows: '22:00-06:00' }), { settleSeconds: 5, folders: [{ path: '/srv/a' }], folderRule: 'homes:uid>=1000', uploadWindows: '22:00-06:00' })
    })
    it('refuses local-only keys, unknown keys, wrong types, a bad rule, bad windows', () => {
      assert.throws(() => decodeCentralSettings({ restoreDir: '/tmp/x' }), holdfastCode('CONFIG_UNKNOWN_KEY', "endpoint's own"))
      assert.throws(() => decodeCentralSettings({ maxUploadBytesPerSecond: 1 }), holdfastCode('CONFIG_UNKNOWN_KEY'))
      assert.throws(() => decodeCentralSettings({ settleSecs: 1 }), holdfastCode('CONFIG_UNKNOWN_KEY', 'unknown agent setting'))
      assert.throws(() => decodeCentralSettings(JSON.parse('{"__proto__": 1}')), holdfastCode('CONFIG_UNKNOWN_KEY'))
      assert.throws(() => decodeCentralSettings({ settleSeconds: '5' }), holdfastCode('CONFIG_INVALID', 'settleSeconds'))
      assert.throws(() => decodeCentralSettings({ folders: ['relative'] }), holdfastCode('CONFIG_INVALID', 'folders'))
      assert.throws(() => decodeCentralSettings({ folderRule: 'everyone' }), holdfastCode('CONFIG_INVALID', 'homes:uid>=N'))
      assert.throws(() => decodeCentralSettings({ uploadWindows: '25:00-26:00' }), holdfastCode('CONFIG_INVALID'))
    })
    it('merges scopes key by key, the later winning', () => {
      assert.deepEqual(mergeSettings({ settleSeconds: 5, workers: 1 }, { settleSeconds: 9 }), { settleSeconds: 9, workers: 1 })
    })
  })

  describe('folder rule homes:uid>=N', () => {
    it('names the existing homes of users at or above N, by user name', () => {
      const alice = join(root, 'alice')
      const carol = join(root, 'carol')
      mkdirSync(alice)
      mkdirSync(carol)
      const passwd = [
        'root:x:0:0:root:/root:/bin/bash',
        `alice:x:1000:1000:Alice:${alice}:/bin/bash`,
        `bob:x:1001:1001:Bob:${join(root, 'bob-gone')}:/bin/bash`,
        `carol:x:2000:2000::${carol}:/bin/sh`,
        'garbage line',
        `daemon:x:999:999::${alice}:/usr/sbin/nologin`
      ].join('\n')
      assert.deepEqual(expandFolderRule('homes:uid>=1000', { passwd }), [{ path: alice, name: 'alice' }, { path: carol, name: 'carol' }])
      assert.deepEqual(expandFolderRule('homes:uid>=1500', { passwd }), [{ path: carol, name: 'carol' }])
      assert.deepEqual(expandFolderRule('homes:uid>=5000', { passwd }), [])
    })
    it('refuses a rule it does not know', () => {
      assert.throws(() => parseFolderRule('homes:uid>1000'), holdfastCode('CONFIG_INVALID'))
      assert.throws(() => parseFolderRule('homes:uid>=99999999999'), holdfastCode('CONFIG_INVALID'))
    })
  })

  describe('agentConfigFrom', () => {
    const local = (): Record<string, unknown> => ({ role: 'agent', name: 'ep', dataDir: join(root, 'data'), fleetKey: KEY, managers: [MANAGER], agent: { folders: [join(root, 'own')], settleSeconds: 2, restoreDir: join(root, 'restores'), maxUploadBytesPerSecond: 1000 } })

    it('puts central values over local ones, adds central folders, keeps local-only keys', () => {
      const c = agentConfigFrom(local(), { settleSeconds: 5, scanIntervalSeconds: 30, folders: [{ path: join(root, 'shared'), name: 'shared' }] })
      assert.equal(c.agent.settleSeconds, 5)
      assert.equal(c.agent.scanIntervalSeconds, 30)
      assert.deepEqual(c.agent.folders.map(f => f.path), [join(root, 'own'), join(root, 'shared')])
      assert.equal(c.agent.restoreDir, join(root, 'restores'))
      assert.equal(c.agent.maxUploadBytesPerSecond, 1000)
      assert.deepEqual(c.managers, [MANAGER])
    })
    it('expands the rule into folders; a rule that names nothing is refused', () => {
      const home = join(root, 'home-dave')
      mkdirSync(home)
      const passwd = `dave:x:1200:1200::${home}:/bin/sh\n`
      assert.deepEqual(agentConfigFrom(local(), { folderRule: 'homes:uid>=1000' }, { passwd }).agent.folders.map(f => f.name), ['own', 'dave'])
      assert.throws(() => agentConfigFrom(local(), { folderRule: 'homes:uid>=5000' }, { passwd }), holdfastCode('CONFIG_REFUSED', 'names no existing home'))
    })
    it('is checked by resolveConfig: a value below its minimum, or two folders with one name, fail', () => {
      assert.throws(() => agentConfigFrom(local(), { scanIntervalSeconds: 0 }), holdfastCode('CONFIG_INVALID', 'scanIntervalSeconds'))
      assert.throws(() => agentConfigFrom(local(), { folders: [{ path: join(root, 'elsewhere', 'own') }] }), holdfastCode('CONFIG_INVALID', 'named'))
    })
  })

  describe('config protocol decoders', () => {
    it('reads a request and a reply', () => {
      assert.deepEqual(decodeConfigRequest({ v: 1, version: 3, settings: { workers: 2 } }), { version: 3, settings: { workers: 2 } })
      assert.deepEqual(decodeConfigReply({ v: 1, applied: 3 }), { applied: 3 })
    })
    it('refuses a missing or bad version, extra fields, bad settings', () => {
      assert.throws(() => decodeConfigRequest({ v: 1, settings: {} }), holdfastCode('FRAME_MALFORMED', 'version'))
      assert.throws(() => decodeConfigRequest({ v: 1, version: 0, settings: {} }), holdfastCode('FRAME_MALFORMED'))
      assert.throws(() => decodeConfigRequest({ v: 1, version: 1.5, settings: {} }), holdfastCode('FRAME_MALFORMED'))
      assert.throws(() => decodeConfigRequest({ v: 1, version: 1, settings: {}, extra: 1 }), holdfastCode('FRAME_MALFORMED', 'extra'))
      assert.throws(() => decodeConfigRequest({ v: 1, version: 1, settings: [] }), holdfastCode('CONFIG_INVALID'))
      assert.throws(() => decodeConfigRequest({ v: 1, version: 1, settings: { restoreDir: '/x' } }), holdfastCode('CONFIG_UNKNOWN_KEY'))
      assert.throws(() => decodeConfigReply({ v: 1, applied: -1 }), holdfastCode('FRAME_MALFORMED'))
      assert.throws(() => decodeConfigReply({ v: 1 }), holdfastCode('FRAME_MALFORMED'))
    })
  })

  describe('CentralConfigStore', () => {
    it('versions every change, keeps the history, merges all with an endpoint, and survives a reopen', () => {
      const store = new CentralConfigStore(root)
      assert.deepEqual(store.effective('peer-a', 'a'), { version: 0, settings: {} })
      assert.equal(store.set('all', 'settleSeconds', 5, 1000).version, 1)
      assert.equal(store.set('a', 'workers', 2, 2000).version, 2)
      const same = store.set('all', 'settleSeconds', 5, 3000)
      assert.equal(same.version, 1, 'the same value is no change')
      assert.equal(store.set('all', 'folders', ['/srv/x'], 4000).version, 3)
      assert.deepEqual(store.effective('peer-a', 'a'), { version: 3, settings: { settleSeconds: 5, folders: [{ path: '/srv/x' }], workers: 2 } })
      assert.deepEqual(store.effective('peer-b', 'b'), { version: 3, settings: { settleSeconds: 5, folders: [{ path: '/srv/x' }] } })
      assert.equal(store.set('peer-b', 'settleSeconds', 9, 5000).version, 4)
      assert.equal(store.effective('peer-b', 'b').settings.settleSeconds, 9)
      assert.equal(store.effective('peer-a', 'a').version, 3, "another endpoint's change leaves a's version")
      const removed = store.set('peer-b', 'settleSeconds', null, 6000)
      assert.equal(removed.old, 9)
      assert.equal(removed.new, undefined)
      store.close()
      const again = new CentralConfigStore(root)
      assert.deepEqual(again.effective('peer-b', 'b'), { version: 5, settings: { settleSeconds: 5, folders: [{ path: '/srv/x' }] } })
      assert.deepEqual(again.history(['all']).map(c => [c.version, c.key, c.old, c.new]), [[1, 'settleSeconds', undefined, 5], [3, 'folders', undefined, [{ path: '/srv/x' }]]])
      again.close()
    })
    it('refuses an unknown key, a local-only key and a wrong type, changing nothing', () => {
      const store = new CentralConfigStore(root)
      assert.throws(() => store.set('all', 'restoreDir', '/tmp/x', 1), holdfastCode('CONFIG_UNKNOWN_KEY'))
      assert.throws(() => store.set('all', 'nope', 1, 1), holdfastCode('CONFIG_UNKNOWN_KEY'))
      assert.throws(() => store.set('all', 'settleSeconds', 'soon', 1), holdfastCode('CONFIG_INVALID'))
      assert.throws(() => store.set('all', 'folders', [{ path: '/x'.repeat(2000) }].concat(Array.from({ length: 100 }, (_, i) => ({ path: `/${'y'.repeat(4000)}${i}` }))), 1), holdfastCode('CONFIG_INVALID', 'bytes'))
      assert.deepEqual(store.effective('p', 'n'), { version: 0, settings: {} })
      store.close()
    })
  })
})
