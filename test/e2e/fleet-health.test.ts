/**
 * Issue 9, items 4 and 5, through the real CLI against real daemons (separate processes):
 * peers added and removed by hand at runtime, persisted across a manager restart, an
 * unreachable one shown offline with its error without holding up the others; `peers
 * --overdue` and its exit status with a config-driven threshold; `peers --watch --json`
 * streaming and stopping on SIGINT; and the Prometheus endpoint scraped over real HTTP.
 */
import { strict as assert } from 'node:assert'
import type { SnapshotRow } from '../../src/store/core/catalog.js'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HOLDFAST_BIN, TestFleet, cliJson, cliJsonStatus, runCli, type AgentHandle } from '../support/fleet.js'
import { seededBytes } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import type { PeerListRow, RoundResult, ManagerStatus, PeersAddReply, PeersRemoveReply } from '../../src/admin/api.js'
import type { AgentStatus } from '../../src/roles/agent/agent.js'

/** Where a running agent can be dialled, with its peer id. */
async function dialAddress (agent: AgentHandle): Promise<string> {
  const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
  const addr = status.listen.find(a => a.startsWith('/ip4/127.0.0.1/'))
  assert.ok(addr !== undefined, JSON.stringify(status.listen))
  return addr.includes('/p2p/') ? addr : `${addr}/p2p/${agent.peerId}`
}

/** A loopback port nothing listens on (taken, then freed). */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', () => { resolve() }) })
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  return port
}

describe('end to end: fleet health (issue 9)', function () {
  let root: string
  let fleet: TestFleet | undefined

  beforeEach(function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-health-'))
    fleet = undefined
  })

  afterEach(async function () {
    await fleet?.stopAll()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('peers add/remove at runtime, persisted across a manager restart; an unreachable one is offline with its error and holds up no one', async function () {
    const f = new TestFleet(join(root, 'f'))
    fleet = f
    const src = join(root, 'desk-src')
    mkdirSync(src)
    const data = seededBytes('desk', 256 * 1024)
    writeFileSync(join(src, 'report.bin'), data)
    await f.init({ mdns: false, bandwidth: 200 * 1024 * 1024 })
    const desk = await f.addAgent('desk', src, { mdns: false })
    // joined, never started: a real peer id at an address where nothing listens
    const ghost = await f.addAgent('ghost', join(root, 'ghost-src'), { mdns: false })
    await f.startAgent(desk)
    await f.startManager()
    const deskAddr = await dialAddress(desk)
    const ghostAddr = `/ip4/127.0.0.1/tcp/${await closedPort()}/p2p/${ghost.peerId}`

    const added = await cliJson<PeersAddReply>(['peers', 'add', deskAddr, '--socket', f.managerSocket])
    assert.deepEqual(added, { peerId: desk.peerId, address: deskAddr, added: true })
    const text = await runCli(['peers', 'add', ghostAddr, '--socket', f.managerSocket])
    assert.equal(text.code, 0, text.stderr)
    assert.match(text.stdout, /^added \/ip4\/127\.0\.0\.1\//)
    const bad = await runCli(['peers', 'add', '/ip4/127.0.0.1/tcp/1', '--socket', f.managerSocket])
    assert.equal(bad.code, 2, 'a multiaddr without /p2p/ is a bad request')
    assert.match(bad.stderr, /names no peer/)

    await cliJson(['scan-now', '--socket', desk.socket])
    const round = await cliJsonStatus<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', '2', '--timeout', '30'])
    assert.equal(round.code, 1, 'one agent failed')
    const deskResult = round.json.peers.find(p => p.peerId === desk.peerId)
    const ghostResult = round.json.peers.find(p => p.peerId === ghost.peerId)
    assert.ok(deskResult?.ok === true, JSON.stringify(round.json))
    // the scheduler's own timer may have pulled desk just before backup-now: count the store
    assert.equal((await cliJson<SnapshotRow[]>(['snapshots', '--socket', f.managerSocket, '--endpoint', 'desk'])).length, 1)
    assert.ok(ghostResult?.ok === false, JSON.stringify(round.json))

    const rows = await cliJson<PeerListRow[]>(['peers', '--socket', f.managerSocket])
    const deskRow = rows.find(r => r.peerId === desk.peerId)
    const ghostRow = rows.find(r => r.peerId === ghost.peerId)
    assert.equal(deskRow?.health?.state, 'online', JSON.stringify(deskRow))
    assert.ok(deskRow?.health?.lastGoodAt !== undefined && deskRow.health.overdue === false)
    assert.equal(ghostRow?.health?.state, 'offline', JSON.stringify(ghostRow))
    assert.equal(ghostRow?.health?.reason, 'unreachable')
    assert.match(ghostRow?.health?.why ?? '', /^unreachable \(\d+ tr(y|ies)\), retry (now|in \d+s): .+/)
    // the bounded backoff: an unreachable peer is tried again within seconds, never later than the interval
    assert.ok((ghostRow?.health?.nextAt ?? Infinity) - Date.now() <= 60_000)
    const table = await runCli(['peers', '--socket', f.managerSocket])
    assert.equal(table.code, 0, table.stderr)
    assert.match(table.stdout, /^desk .* online .* up to date; next visit in/m)
    // never answered: no name yet, never seen
    assert.match(table.stdout, new RegExp(`^- +…${ghost.peerId.slice(-12)} +offline +never +never .* unreachable \\(`, 'm'))

    // a restart: both come back from static-peers.json
    await f.stop('manager')
    await f.startManager()
    const afterRestart = await cliJson<PeerListRow[]>(['peers', '--socket', f.managerSocket])
    assert.deepEqual(afterRestart.map(r => r.peerId).sort(), [desk.peerId, ghost.peerId].sort())
    assert.ok(afterRestart.every(r => r.source === 'static'))

    const removed = await cliJson<PeersRemoveReply>(['peers', 'remove', ghost.peerId, '--socket', f.managerSocket])
    assert.deepEqual(removed.removed, [ghostAddr])
    const unknown = await runCli(['peers', 'remove', ghost.peerId, '--socket', f.managerSocket])
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, /PEER_UNKNOWN/)
    assert.deepEqual((await cliJson<PeerListRow[]>(['peers', '--socket', f.managerSocket])).map(r => r.peerId), [desk.peerId])
    await f.stop('manager')
    await f.startManager()
    assert.deepEqual((await cliJson<PeerListRow[]>(['peers', '--socket', f.managerSocket])).map(r => r.peerId), [desk.peerId], 'the removal survives a restart too')
    assert.deepEqual(JSON.parse(readFileSync(join(f.managerDir, 'static-peers.json'), 'utf8')), { version: 1, peers: [deskAddr] })

    // and the peer added by hand is backed up: the bytes restored are the bytes written
    const target = join(root, 'restored')
    const r = await runCli(['restore', '--socket', f.managerSocket, '--endpoint', 'desk', '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(readFileSync(join(target, 'desk-src', 'report.bin')).equals(data))
  })

  it('--overdue exits 1 past the configured threshold; --watch --json streams until SIGINT; the metrics endpoint holds every endpoint', async function () {
    const f = new TestFleet(join(root, 'f'))
    fleet = f
    const srcA = join(root, 'a-src')
    const srcB = join(root, 'b-src')
    mkdirSync(srcA)
    mkdirSync(srcB)
    writeFileSync(join(srcA, 'a.bin'), seededBytes('a', 128 * 1024))
    writeFileSync(join(srcB, 'b.bin'), seededBytes('b', 96 * 1024))
    await f.init({ mdns: false, bandwidth: 200 * 1024 * 1024 })
    const a = await f.addAgent('alpha', srcA, { mdns: false })
    const b = await f.addAgent('bravo', srcB, { mdns: false })
    await f.startAgent(a)
    await f.startAgent(b)
    const addrs = [await dialAddress(a), await dialAddress(b)]
    // config-driven: the agents in staticPeers, overdue after 4 s (0.0011 h), metrics on a loopback port
    const OVERDUE_MS = 0.0011 * 3_600_000
    f.patchConfig(f.managerConfig, c => {
      c.staticPeers = addrs
      const m = c.manager as Record<string, unknown>
      m.overdueAfterHours = 0.0011
      m.metrics = { listen: '127.0.0.1:0' }
    })
    await f.startManager()
    await cliJson(['scan-now', '--socket', a.socket])
    await cliJson(['scan-now', '--socket', b.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', '2', '--timeout', '30'])
    assert.ok(round.peers.length === 2 && round.peers.every(p => p.ok), JSON.stringify(round))
    const backedUpAt = Date.now()

    // a threshold given on the command line wins over the config's
    const none = await runCli(['peers', '--overdue', '--overdue-after', '1h', '--socket', f.managerSocket])
    assert.equal(none.code, 0, none.stderr)
    assert.equal(none.stdout.trim(), 'no endpoint is overdue')

    // past the config's threshold both are overdue, and --overdue says so with exit status 1
    const overdue = await until('both endpoints overdue', OVERDUE_MS + 15_000, async () => {
      const r = await cliJsonStatus<PeerListRow[]>(['peers', '--overdue', '--socket', f.managerSocket])
      return r.code === 1 && r.json.length === 2 ? r : undefined
    })
    assert.ok(Date.now() - backedUpAt >= OVERDUE_MS - 1000, 'not flagged before the threshold')
    assert.ok(overdue.json.every(r => r.health?.overdue === true))
    const text = await runCli(['peers', '--overdue', '--socket', f.managerSocket])
    assert.equal(text.code, 1)
    assert.match(text.stdout, /^alpha .* OVERDUE/m)

    // bravo goes away; alpha is backed up again: only bravo is overdue now
    await f.stop('agent-bravo')
    writeFileSync(join(srcA, 'a2.bin'), seededBytes('a2', 64 * 1024))
    await cliJson(['scan-now', '--socket', a.socket])
    const second = await cliJsonStatus<RoundResult>(['backup-now', '--socket', f.managerSocket, '--timeout', '30'])
    assert.equal(second.code, 1, JSON.stringify(second.json))
    const only = await cliJsonStatus<PeerListRow[]>(['peers', '--overdue', '--socket', f.managerSocket])
    assert.equal(only.code, 1)
    assert.deepEqual(only.json.map(r => r.name), ['bravo'])
    assert.equal(only.json[0]?.health?.state, 'offline')

    // --watch --json: one JSON line per refresh, about a second apart; SIGINT ends it cleanly
    const watcher = spawn(process.execPath, [HOLDFAST_BIN, 'peers', '--watch', '--json', '--socket', f.managerSocket], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    watcher.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    watcher.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    const exited = new Promise<number | null>(resolve => { watcher.once('exit', code => { resolve(code) }) })
    try {
      const started = Date.now()
      await until('three refreshes', 15_000, async () => out.split('\n').filter(l => l !== '').length >= 3 ? true : undefined)
      assert.ok(Date.now() - started >= 1_500, 'refreshes are paced, not a busy loop')
      watcher.kill('SIGINT')
      const code = await Promise.race([exited, new Promise<'hung'>(resolve => setTimeout(() => { resolve('hung') }, 5_000))])
      assert.equal(code, 0, `watch ended with ${String(code)}: ${err}`)
    } finally {
      if (watcher.exitCode === null && watcher.signalCode === null) watcher.kill('SIGKILL')
    }
    const lines = out.split('\n').filter(l => l !== '')
    assert.ok(lines.length >= 3)
    for (const line of lines) {
      const rows = JSON.parse(line) as PeerListRow[]
      assert.deepEqual(rows.map(r => r.name).sort(), ['alpha', 'bravo'])
    }

    // the metrics endpoint, scraped with a real HTTP client
    const status = await cliJson<ManagerStatus>(['status', '--role', 'manager', '--socket', f.managerSocket])
    assert.match(status.metrics ?? '', /^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    const res = await fetch(status.metrics as string, { signal: AbortSignal.timeout(10_000) })
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
    const samples = parseProm(await res.text())
    const get = (name: string, labels: Record<string, string> = {}): number | undefined =>
      samples.find(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
    const lastA = get('holdfast_endpoint_last_good_backup_timestamp_seconds', { peer: a.peerId, name: 'alpha' })
    assert.ok(lastA !== undefined && Math.abs(lastA - Date.now() / 1000) < 120, `alpha's last good backup: ${String(lastA)}`)
    assert.ok((get('holdfast_endpoint_last_good_backup_age_seconds', { peer: b.peerId }) ?? -1) >= OVERDUE_MS / 1000)
    // alpha was backed up a few seconds ago, but the threshold is 4 s: on a loaded machine it
    // may be overdue again by this scrape. Its flag must agree with its own age in the scrape.
    const ageA = get('holdfast_endpoint_last_good_backup_age_seconds', { peer: a.peerId }) ?? -1
    assert.ok(ageA >= 0, 'alpha has a last good backup age')
    assert.equal(get('holdfast_endpoint_overdue', { peer: a.peerId }), ageA * 1000 > OVERDUE_MS ? 1 : 0, `alpha's overdue flag agrees with its age (${ageA} s)`)
    assert.equal(get('holdfast_endpoint_overdue', { peer: b.peerId }), 1)
    assert.equal(get('holdfast_endpoint_state', { peer: b.peerId, state: 'offline' }), 1)
    assert.equal(get('holdfast_endpoint_state', { peer: b.peerId, state: 'online' }), 0)
    assert.equal(get('holdfast_endpoint_state', { peer: a.peerId, state: 'online' }), 1)
    assert.equal(get('holdfast_endpoint_pending_bytes', { peer: a.peerId }), 0)
    assert.equal(get('holdfast_endpoint_rate_bytes_per_second', { peer: a.peerId }), 0)
    assert.ok((get('holdfast_pulls_started_total') ?? 0) >= 4)
    assert.ok((get('holdfast_pulls_total', { result: 'ok' }) ?? 0) >= 3)
    assert.ok((get('holdfast_pulls_total', { result: 'failed' }) ?? 0) >= 1)
    assert.ok((get('holdfast_pulled_bytes_total') ?? 0) > 0)
    assert.ok(samples.some(s => s.name === 'holdfast_pull_errors_total' && s.value >= 1), 'errors by code')
    assert.ok((get('holdfast_pull_duration_seconds_count', { result: 'ok' }) ?? 0) >= 3)
    assert.equal(get('holdfast_pulls_active'), 0)
    assert.equal(get('holdfast_pulls_queued'), 0)
    assert.equal(get('holdfast_budget_bytes_per_second'), 200 * 1024 * 1024)
    assert.equal((await fetch(status.metrics?.replace(/\/metrics$/, '/') as string, { signal: AbortSignal.timeout(10_000) })).status, 404)
  })

  it('a metrics address that is taken fails the manager\'s start with METRICS_LISTEN_FAILED, promptly', async function () {
    const f = new TestFleet(join(root, 'f'))
    fleet = f
    await f.init({ mdns: false })
    const squatter = createServer()
    await new Promise<void>(resolve => { squatter.listen(0, '127.0.0.1', () => { resolve() }) })
    try {
      const port = (squatter.address() as { port: number }).port
      f.patchConfig(f.managerConfig, c => { (c.manager as Record<string, unknown>).metrics = { listen: `127.0.0.1:${port}` } })
      const started = Date.now()
      await assert.rejects(f.startManager(), /exited during start[\s\S]*METRICS_LISTEN_FAILED/)
      assert.ok(Date.now() - started < 20_000, 'exits, does not hang with a node open')
    } finally {
      await new Promise<void>(resolve => { squatter.close(() => { resolve() }) })
    }
  })
})

interface Sample { name: string, labels: Record<string, string>, value: number }

/** The Prometheus text format, as far as a scrape of ours needs: one sample a line. */
function parseProm (text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(m !== null, `not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string
    out.push({ name: m[1] as string, labels, value: Number(m[3]) })
  }
  return out
}
