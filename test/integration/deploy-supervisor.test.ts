import { strict as assert } from 'node:assert'
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChildProcess } from 'node:child_process'
import { ManualClock } from '../../src/util/clock.js'
import { buildPackage, currentVersion, installPackage, readUpgradeState, runSupervised, switchCurrent, EXIT_RESTART_INTO_CURRENT } from '../../src/deploy/package.js'
import { fakeProject, newManager, type Behaviour, type Manager } from '../support/packages.js'

const SWITCH_MODULE = fileURLToPath(new URL('../../src/deploy/version-switch.js', import.meta.url))

describe('deploy: supervisor and rollback', function () {
  this.timeout(60_000)
  let root: string
  let manager: Manager
  let n = 0
  const children: ChildProcess[] = []

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-sup-'))
    manager = await newManager()
  })
  afterEach(() => { for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  /** An install root with each [version, behaviour] installed, in order; the first is current (healthy). */
  async function setUp (versions: Array<[string, Behaviour, string?]>): Promise<{ installRoot: string, ran: string }> {
    const dir = join(root, `case-${n++}`)
    mkdirSync(dir)
    const installRoot = join(dir, 'opt')
    for (const [version, behaviour, next] of versions) {
      const { tarball, signed } = await buildPackage({ projectDir: fakeProject(dir, version, behaviour, next), outDir: dir, privateKey: manager.privateKey, signer: manager.peerId, version })
      await installPackage({ installRoot, source: createReadStream(tarball), signed, pinnedManagers: [manager.peerId], maxBytes: 1024 * 1024 })
    }
    await switchCurrent(installRoot, versions[0]?.[0] as string)
    const state = readUpgradeState(installRoot)
    assert.equal(state?.phase, 'switched')
    return { installRoot, ran: join(dir, 'ran') }
  }

  const ranOf = (file: string): string[] => readFileSync(file, 'utf8').trim().split('\n')

  it('rolls back when the new version exits at once, and runs the previous one', async () => {
    const { installRoot, ran } = await setUp([['1.0.0', 'healthy-exit'], ['2.0.0', 'exit-3']])
    await switchCurrent(installRoot, '2.0.0')
    const logs: string[] = []
    const code = await runSupervised({ installRoot, args: [ran], stdio: 'ignore', log: l => logs.push(l), onChild: c => children.push(c) })
    assert.equal(code, 0, logs.join('\n'))
    assert.deepEqual(ranOf(ran), ['2.0.0', '1.0.0'])
    assert.equal(currentVersion(installRoot), '1.0.0')
    const state = readUpgradeState(installRoot)
    assert.equal(state?.phase, 'rolled-back')
    assert.deepEqual(state?.failed, { version: '2.0.0', reason: 'exited with code 3 before reporting healthy' })
  })

  it('rolls back when the new version never reports healthy by the deadline (injected clock)', async () => {
    const { installRoot, ran } = await setUp([['1.0.0', 'healthy-exit'], ['2.0.0', 'hang']])
    await switchCurrent(installRoot, '2.0.0')
    const clock = new ManualClock(1_000_000)
    let started: () => void = () => {}
    const firstChild = new Promise<void>(resolve => { started = resolve })
    const run = runSupervised({ installRoot, args: [ran], stdio: 'ignore', clock, healthDeadlineMs: 60_000, killGraceMs: 5_000, log: () => {}, onChild: c => { children.push(c); started() } })
    await firstChild
    // once the hanging child has started (it writes its mark) and is waited for, its deadline
    // passes in an instant
    for (let i = 0; i < 500 && (clock.pendingSleepers === 0 || !existsSync(ran)); i++) await new Promise(resolve => setTimeout(resolve, 10))
    assert.equal(currentVersion(installRoot), '2.0.0')
    await clock.advance(60_000)
    const code = await run
    assert.equal(code, 0)
    assert.equal(children[0]?.signalCode, 'SIGTERM', 'the hanging version was stopped')
    assert.deepEqual(ranOf(ran), ['2.0.0', '1.0.0'])
    assert.equal(currentVersion(installRoot), '1.0.0')
    assert.deepEqual(readUpgradeState(installRoot)?.failed, { version: '2.0.0', reason: 'no health report within 60 s' })
  })

  it('restarts into current on exit 75; the new version reports healthy and is kept', async () => {
    const { installRoot, ran } = await setUp([['1.0.0', 'switch-to-next', '2.0.0'], ['2.0.0', 'healthy-exit']])
    const code = await runSupervised({
      installRoot,
      args: [ran],
      stdio: 'ignore',
      log: () => {},
      onChild: c => children.push(c),
      env: { ...process.env, HOLDFAST_TEST_SWITCH_MODULE: SWITCH_MODULE, HOLDFAST_TEST_INSTALL_ROOT: installRoot }
    })
    assert.equal(code, 0)
    assert.equal(children[0]?.exitCode, EXIT_RESTART_INTO_CURRENT)
    assert.deepEqual(ranOf(ran), ['1.0.0', '2.0.0'])
    assert.equal(currentVersion(installRoot), '2.0.0')
    const state = readUpgradeState(installRoot)
    assert.equal(state?.phase, 'healthy')
    assert.deepEqual(state?.history.map(e => `${e.event} ${e.version}`).slice(-3), ['switched 1.0.0', 'healthy 1.0.0', 'switched 2.0.0', 'healthy 2.0.0'].slice(-3))
  })

  it('a version switched to that crashes the supervisor each time is rolled back after maxAttempts starts', async () => {
    const { installRoot, ran } = await setUp([['1.0.0', 'healthy-exit'], ['2.0.0', 'hang']])
    await switchCurrent(installRoot, '2.0.0')
    // three supervisors stopped while 2.0.0 was still unproven: a stop is not a failure, but
    // each start counts
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController()
      const run = runSupervised({ installRoot, args: [ran], stdio: 'ignore', log: () => {}, signal: ac.signal, onChild: c => { children.push(c); ac.abort() } })
      assert.equal(await run, 143)
      assert.equal(currentVersion(installRoot), '2.0.0')
    }
    assert.equal(readUpgradeState(installRoot)?.attempts, 3)
    const code = await runSupervised({ installRoot, args: [ran], stdio: 'ignore', log: () => {}, maxAttempts: 3, onChild: c => children.push(c) })
    assert.equal(code, 0)
    assert.equal(currentVersion(installRoot), '1.0.0')
    assert.equal(readUpgradeState(installRoot)?.failed?.reason, '3 starts without a health report')
  })
})
