/**
 * The audit log through the CLI against a real manager process: prune, retention-set and
 * backup-now leave entries (a dry-run prune does not), the entries survive a restart of the
 * manager, --since filters, and --json parses. Each entry names the CLI process that sent the
 * command (its uid, pid and user name).
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, cliJson, runCli } from '../support/fleet.js'
import type { AuditEntry } from '../../src/admin/api.js'

/** The name /etc/passwd gives `uid`, as the daemon should find it. */
function userOf (uid: number): string | undefined {
  return readFileSync('/etc/passwd', 'utf8').split('\n').map(l => l.split(':')).find(f => f[2] === String(uid))?.[0]
}

describe('e2e: holdfast audit', function () {
  this.timeout(180_000)
  let root = ''
  let fleet: TestFleet | undefined

  afterEach(async () => {
    await fleet?.stopAll()
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  it('records prune, retention-set and backup-now; survives a restart; --since filters; --json parses', async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-audit-'))
    fleet = new TestFleet(root)
    await fleet.init({ mdns: false })
    await fleet.startManager()
    const sock = ['--socket', fleet.managerSocket]
    assert.deepEqual(await cliJson<AuditEntry[]>(['audit', ...sock]), [])
    await cliJson(['prune', '--dry-run', ...sock])
    // run as a child whose pid we know: the entry names this process as the actor
    const retention = await runCli(['retention', 'set', '--keep-last', '3', ...sock, '--json'])
    assert.equal(retention.code, 0, retention.stderr)
    await cliJson(['prune', ...sock], { timeoutMs: 60_000 })
    await cliJson(['backup-now', ...sock, '--timeout', '1'], { timeoutMs: 60_000 })
    const before = await cliJson<AuditEntry[]>(['audit', ...sock])
    assert.deepEqual(before.map(e => e.command), ['retention-set', 'prune', 'backup-now'], JSON.stringify(before))
    for (const e of before) {
      assert.equal(typeof e.time, 'number')
      // the CLI children run as this test's uid
      assert.equal(e.actor.uid, process.getuid?.(), JSON.stringify(e.actor))
      assert.equal(typeof (e.actor as { pid?: unknown }).pid, 'number', JSON.stringify(e.actor))
      assert.equal(e.outcome, 'ok')
      assert.ok(e.target.length > 0)
    }

    assert.equal((before[0].actor as { pid?: number }).pid, retention.pid, 'the actor is the CLI process that sent retention-set')
    assert.equal((before[0].actor as { user?: string }).user, userOf(process.getuid?.() ?? -1))

    await fleet.stop('manager')
    await fleet.startManager()
    const after = await cliJson<AuditEntry[]>(['audit', ...sock])
    assert.deepEqual(after, before, 'the entries survive a restart')

    const cut = new Date(before[1].time).toISOString()
    const since = await cliJson<AuditEntry[]>(['audit', '--since', cut, ...sock])
    // entries in the same millisecond as the cut are in too
    assert.deepEqual(since, before.filter(e => e.time >= before[1].time), JSON.stringify(since))
    assert.ok(since.length >= 2 && since.length < before.length + 1)
    const future = await cliJson<AuditEntry[]>(['audit', '--since', '2999-01-01', ...sock])
    assert.deepEqual(future, [])

    const text = await runCli(['audit', ...sock])
    assert.equal(text.code, 0)
    assert.match(text.stdout, /retention-set/)
    assert.match(text.stdout, new RegExp(`uid ${process.getuid?.() ?? ''}\\b.*pid ${retention.pid}\\b`))
  })
})
