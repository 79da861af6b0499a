/**
 * `admin.group`: the admin socket is reachable by the daemon's user and by members of the
 * configured group, and by nobody else, enforced by the kernel at connect(2) (Node has no
 * SO_PEERCRED; docs/security.md, "The admin socket"). Tested with real processes running the
 * real CLI under other uids (setpriv): an outsider is refused, a member gets in and its
 * audited command records its uid and pid.
 *
 * Why in the LAN layer: running a process as another uid needs real root. The rest of the suite
 * runs inside `unshare -rn`, whose user namespace maps only root, so setuid to any other uid
 * fails there; the LAN layer runs first, as real root, in the machine's namespace. Nothing here
 * touches the network beyond the manager listening on 127.0.0.1 (mDNS off).
 */
import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import { chmodSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { HOLDFAST_BIN, TestFleet, cliJson } from '../support/fleet.js'
import { isCi } from '../support/ci.js'
import type { AuditEntry } from '../../src/admin/api.js'

/** Ids no account on a test machine uses: an outsider, a member, and the admin group. */
const OUTSIDER = 47001
const MEMBER = 47002
const GROUP = 47010

/** Why processes cannot be run as other uids here, or undefined when they can. */
function otherUidsUnavailable (): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root'
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/)
    if (map[2] !== '4294967295') return `inside a user namespace that maps only ${map[2] ?? '?'} uid(s)`
  } catch (err) { return `cannot read /proc/self/uid_map: ${String(err)}` }
  return undefined
}

interface Run { code: number, stdout: string, stderr: string, pid: number }

/** The real CLI as `uid` with the given groups (setpriv), bounded in time. */
async function cliAs (uid: number, groups: number[], args: string[]): Promise<Run> {
  const argv = ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, groups.length === 0 ? '--clear-groups' : `--groups=${groups.join(',')}`, process.execPath, HOLDFAST_BIN, ...args, '--json']
  return await new Promise((resolve, reject) => {
    // HOME: the other uid cannot read root's
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: '/tmp' } })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`cli as ${uid} took longer than 30 s`)) }, 30_000)
    child.on('error', err => { clearTimeout(timer); reject(err) })
    // setpriv execs node in place, so this pid is the CLI's
    child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr, pid: child.pid ?? -1 }) })
  })
}

describe('admin socket: admin.group (processes of other uids)', function () {
  this.timeout(120_000)
  let root = ''
  let run = ''
  let fleet: TestFleet | undefined

  // The other uids run this checkout's CLI, so they must be able to reach it: a checkout under
  // a 0700 directory (a CI runner's `mktemp -d`) gets o+x on its ancestors for the test's span.
  const opened: Array<{ dir: string, mode: number }> = []

  after(() => {
    for (const { dir, mode } of opened.reverse()) chmodSync(dir, mode)
  })

  before(function () {
    const why = otherUidsUnavailable()
    if (why === undefined) {
      for (let dir = dirname(HOLDFAST_BIN); ; dir = dirname(dir)) {
        const mode = statSync(dir).mode & 0o7777
        if ((mode & 0o001) === 0) { opened.push({ dir, mode }); chmodSync(dir, mode | 0o001) }
        if (dir === dirname(dir)) break
      }
      return
    }
    if (isCi()) throw new Error(`CI=true and processes cannot run as other uids: ${why}`)
    // Reason: only real root can run the clients as other uids; the other layers still run.
    process.stderr.write(`admin.group test skipped: ${why}\n`)
    this.skip()
  })

  afterEach(async () => {
    await fleet?.stopAll()
    fleet = undefined
    for (const d of [root, run]) if (d !== '') rmSync(d, { recursive: true, force: true })
  })

  it('lets the daemon user and group members in, refuses every other uid; the member is the audited actor', async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-admin-group-'))
    // where the socket's directory goes: a parent others may traverse (as /run is)
    run = mkdtempSync(join(tmpdir(), 'holdfast-admin-run-'))
    chmodSync(run, 0o711)
    const dir = join(run, 'holdfast')
    const socket = join(dir, 'admin.sock')
    fleet = new TestFleet(root)
    await fleet.init({ mdns: false })
    fleet.patchConfig(fleet.managerConfig, c => { c.adminSocket = socket; c.admin = { group: GROUP } })
    await fleet.startDaemon('manager', 'manager', fleet.managerConfig, socket)

    const d = lstatSync(dir)
    assert.equal(d.gid, GROUP)
    assert.equal(d.mode & 0o777, 0o710, 'the directory: the group may enter, others nothing')
    const s = lstatSync(socket)
    assert.ok(s.isSocket())
    assert.equal(s.gid, GROUP)
    assert.equal(s.mode & 0o777, 0o660)

    // the daemon's user (root here)
    await cliJson(['status', '--socket', socket, '--role', 'manager'])

    const outsider = await cliAs(OUTSIDER, [], ['status', '--socket', socket, '--role', 'manager'])
    assert.notEqual(outsider.code, 0, 'another uid outside the group is refused')
    assert.match(outsider.stderr, /EACCES/, outsider.stderr)
    // a member of some other group is an outsider too
    const otherGroup = await cliAs(OUTSIDER, [GROUP + 1], ['status', '--socket', socket, '--role', 'manager'])
    assert.match(otherGroup.stderr, /EACCES/, otherGroup.stderr)

    const member = await cliAs(MEMBER, [GROUP], ['status', '--socket', socket, '--role', 'manager'])
    assert.equal(member.code, 0, member.stderr)
    assert.equal((JSON.parse(member.stdout) as { peerId: string }).peerId, fleet.managerPeerId)

    const retention = await cliAs(MEMBER, [GROUP], ['retention', 'set', '--keep-last', '5', '--socket', socket])
    assert.equal(retention.code, 0, retention.stderr)
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', socket])
    const entry = audit.find(e => e.command === 'retention-set')
    assert.ok(entry !== undefined, JSON.stringify(audit))
    assert.equal(entry.actor.uid, MEMBER, JSON.stringify(entry.actor))
    assert.equal((entry.actor as { pid?: number }).pid, retention.pid)
  })

  it('refuses to start when the socket directory is open to others', async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-admin-group-'))
    run = mkdtempSync(join(tmpdir(), 'holdfast-admin-run-'))
    chmodSync(run, 0o777)
    fleet = new TestFleet(root)
    await fleet.init({ mdns: false })
    // the directory exists, ours, but others may write into it: not made the group's
    fleet.patchConfig(fleet.managerConfig, c => { c.adminSocket = join(run, 'admin.sock'); c.admin = { group: GROUP } })
    await assert.rejects(fleet.startDaemon('manager', 'manager', fleet.managerConfig, join(run, 'admin.sock')), /ADMIN_SOCKET_UNSAFE|open to others/)
    assert.equal(lstatSync(run).mode & 0o777, 0o777, 'left as it was')
  })
})
