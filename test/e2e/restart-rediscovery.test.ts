/**
 * Issue 8: a crash must not cost an endpoint its backups. The manager and an agent are killed
 * (SIGKILL, so neither says goodbye over mDNS) and started again in either order; the file the
 * agent stages afterwards must land in a snapshot on the manager's own timer within one pull
 * interval, and neither daemon may log an uncaught error or a stack.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type Server } from 'node:net'
import { Bonjour } from 'bonjour-service'
import { join } from 'node:path'
import { TestFleet, cliJson, runCli } from '../support/fleet.js'
import { seededBytes } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import type { RoundResult } from '../../src/roles/manager/manager.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'
import type { AgentStatus } from '../../src/roles/agent/agent.js'
import { fleetTag } from '../../src/node/fleet.js'

/**
 * The agent's old self, still answering on the network after the crash: an mDNS record of its
 * name with its old port (what a cache, a sleep proxy or a half-dead old process would send),
 * and a program now on that port that resets every connection.
 */
class Ghost {
  private constructor (private readonly bonjour: Bonjour, private readonly server: Server) {}

  static async start (agent: { peerId: string, name: string, config: string }, port: number): Promise<Ghost> {
    const server = createServer(socket => { socket.resetAndDestroy() })
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', () => { resolve() }) })
    const fleetKey = (JSON.parse(readFileSync(agent.config, 'utf8')) as { fleetKey: string }).fleetKey
    const bonjour = new Bonjour()
    bonjour.publish({
      name: `holdfast-${agent.peerId.slice(-16)}`,
      type: 'holdfast',
      protocol: 'tcp',
      port,
      probe: false,
      txt: { peer: agent.peerId, role: 'agent', pv: '1', ver: '0.1.0', name: agent.name, fleet: fleetTag(fleetKey), port: String(port) }
    })
    return new Ghost(bonjour, server)
  }

  async stop (): Promise<void> {
    await new Promise<void>(resolve => { this.bonjour.unpublishAll(() => { this.bonjour.destroy(() => { resolve() }) }) })
    await new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
  }
}

/** Short, so "within one interval" is measurable; the manager pulls on this timer alone. */
const PULL_INTERVAL_S = 5
/** The pull itself (a few KiB over loopback) and the CLI's process starts, on a busy machine. */
const PULL_SLACK_MS = 4_000

describe('end to end: restarts do not lose an endpoint (issue 8)', function () {
  let root: string
  let fleet: TestFleet | undefined
  let ghost: Ghost | undefined

  beforeEach(function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-restart-'))
    fleet = undefined
    ghost = undefined
  })

  afterEach(async function () {
    await fleet?.stopAll()
    await ghost?.stop()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  const cases = [
    { order: 'manager first', stale: false },
    { order: 'agent first', stale: false },
    { order: 'manager first', stale: true },
    { order: 'agent first', stale: true }
  ] as const
  for (const { order, stale } of cases) {
    const with_ = stale ? ', with a stale record of the agent answering at its old port' : ''
    it(`kill -9 of the manager then the agent, restarted ${order}${with_}: the next backup lands within one interval`, async function () {
      const f = new TestFleet(join(root, 'f'))
      fleet = f
      const src = join(root, 'src')
      mkdirSync(src)
      writeFileSync(join(src, 'before.bin'), seededBytes('before', 64 * 1024))
      await f.init({ pullInterval: PULL_INTERVAL_S, bandwidth: 200 * 1024 * 1024 })
      const agent = await f.addAgent('laptop', src)
      await f.startManager()
      await f.startAgent(agent)
      await cliJson(['scan-now', '--socket', agent.socket])
      const first = await cliJson<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', '1', '--timeout', '30'])
      assert.ok(first.peers[0]?.ok, JSON.stringify(first))
      const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
      const oldPort = Number(/\/tcp\/(\d+)\//.exec(status.listen[0] ?? '')?.[1])
      assert.ok(oldPort > 0, JSON.stringify(status.listen))

      await f.stop('manager', 'SIGKILL')
      await f.stop('agent-laptop', 'SIGKILL')
      if (stale) ghost = await Ghost.start(agent, oldPort)
      if (order === 'manager first') {
        await f.startManager()
        await f.startAgent(agent)
      } else {
        await f.startAgent(agent)
        await f.startManager()
      }

      const after = seededBytes('after', 96 * 1024)
      writeFileSync(join(src, 'after.bin'), after)
      await cliJson(['scan-now', '--socket', agent.socket])
      const staged = Date.now()
      // No backup-now: the manager's own timer must find the agent and pull it.
      await until('the restarted agent\'s new file in a snapshot', PULL_INTERVAL_S * 1000 + PULL_SLACK_MS, async () => {
        const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', f.managerSocket])
        return snaps.length >= 2 ? snaps : undefined
      }).catch(err => {
        throw new Error(`${String(err)} (${Date.now() - staged} ms after staging)\nmanager log:\n${f.log('manager')}\nagent log:\n${f.log('agent-laptop')}`)
      })

      const target = join(root, 'restore')
      const r = await runCli(['restore', '--socket', f.managerSocket, '--endpoint', 'laptop', '--target', target])
      assert.equal(r.code, 0, r.stderr)
      assert.ok(Buffer.from(readFileSync(join(target, 'src', 'after.bin'))).equals(Buffer.from(after)), 'restored bytes equal the bytes written after the restart')

      await f.stopAll()
      for (const key of ['manager', 'agent-laptop']) {
        const log = readFileSync(join(f.root, `${key}.log`), 'utf8')
        assert.doesNotMatch(log, /uncaught|already in use|^\s+at /im, `${key} log has an uncaught error or a stack:\n${log}`)
      }
    })
  }
})
