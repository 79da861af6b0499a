/**
 * One daemon per data directory (a second one would recover away the first's uncommitted
 * pack tail), and init/join replace their config files atomically with mode 0600. Real
 * processes through the real CLI; mDNS off and loopback only, so no namespace is needed.
 */
import { strict as assert } from 'node:assert'
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, runCli, cliJson, type AgentHandle } from '../support/fleet.js'

/** A second daemon on a locked directory: exits at once (well inside this), or the test fails. */
const SECOND_DAEMON_MS = 20_000

describe('e2e: data directory', function () {
  this.timeout(120_000)
  let root: string
  let fleet: TestFleet
  let agent: AgentHandle

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-e2e-datadir-'))
    fleet = new TestFleet(root)
    await fleet.init({ mdns: false })
    const folder = join(root, 'src')
    mkdirSync(folder)
    agent = await fleet.addAgent('a', folder, { mdns: false })
  })
  after(async () => {
    await fleet?.stopAll()
    rmSync(root, { recursive: true, force: true })
  })

  for (const role of ['manager', 'agent'] as const) {
    it(`refuses a second ${role} on the same data directory with DATA_DIR_LOCKED and the holder's pid; after kill -9 a new one starts`, async () => {
      const key = role === 'manager' ? 'manager' : `agent-${agent.name}`
      const config = role === 'manager' ? fleet.managerConfig : agent.config
      const socket = role === 'manager' ? fleet.managerSocket : agent.socket
      const start = async (): Promise<void> => { role === 'manager' ? await fleet.startManager() : await fleet.startAgent(agent) }
      await start()
      const first = fleet.process(key)
      assert.ok(first?.pid !== undefined)
      const before = await cliJson<{ peerId: string }>(['status', '--socket', socket, '--role', role])

      const second = await runCli([role, '--config', config], { timeoutMs: SECOND_DAEMON_MS })
      assert.equal(second.code, 4, `the second ${role} must exit with the DATA_DIR_LOCKED status: ${second.stderr}`)
      assert.match(second.stderr, /DATA_DIR_LOCKED/)
      assert.ok(second.stderr.includes(`pid ${first.pid}`), `names the holder's pid ${first.pid}: ${second.stderr}`)

      // The first is unharmed and still owns its admin socket.
      assert.equal(first.exitCode, null)
      assert.equal(first.signalCode, null)
      const after = await cliJson<{ peerId: string }>(['status', '--socket', socket, '--role', role])
      assert.equal(after.peerId, before.peerId)

      // kill -9: the kernel drops the lock with the process, so the next start needs no cleanup.
      await fleet.stop(key, 'SIGKILL')
      await start()
      const third = fleet.process(key)
      assert.ok(third?.pid !== undefined && third.pid !== first.pid)
      assert.equal(readFileSync(join(role === 'manager' ? fleet.managerDir : agent.dataDir, 'daemon.pid'), 'utf8').trim(), String(third.pid))
      await fleet.stop(key)
    })
  }

  it('init --force and join --force replace the config atomically, mode 0600, with no temporary file left', async () => {
    const dir = join(root, 'fresh-manager')
    await cliJson(['init', '--data-dir', dir, '--no-mdns'])
    const file = join(dir, 'manager.json')
    const old = readFileSync(file)
    chmodSync(file, 0o644)
    // A reader that opened the old config keeps reading it whole: the new one is a new file
    // renamed over it, not the old one truncated and rewritten (a crash between would leave it empty).
    const fd = openSync(file, 'r')
    try {
      await cliJson(['init', '--data-dir', dir, '--no-mdns', '--force'])
      const buf = Buffer.alloc(old.length + 64)
      const got = readSync(fd, buf, 0, buf.length, 0)
      assert.deepEqual(buf.subarray(0, got), old, 'the old config, whole, for a reader that had it open')
    } finally {
      closeSync(fd)
    }
    assert.notDeepEqual(readFileSync(file), old, 'a new fleet key was written')
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the config holds the fleet key: owner only, also when replaced')
    assert.deepEqual(readdirSync(dir).filter(n => n.includes('.tmp')), [])

    chmodSync(agent.config, 0o644)
    const agentOld = readFileSync(agent.config)
    // join enrols with the running manager: it needs a token from it
    await fleet.startManager()
    const token = await fleet.createToken()
    const afd = openSync(agent.config, 'r')
    try {
      await cliJson(['join', token, '--data-dir', agent.dataDir, '--folder', agent.folder, '--name', agent.name, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--force'])
      const buf = Buffer.alloc(agentOld.length + 64)
      assert.deepEqual(buf.subarray(0, readSync(afd, buf, 0, buf.length, 0)), agentOld)
    } finally {
      closeSync(afd)
    }
    assert.equal(statSync(agent.config).mode & 0o777, 0o600)
    assert.deepEqual(readdirSync(agent.dataDir).filter(n => n.includes('.tmp')), [])
    await fleet.stop('manager')
  })
})
