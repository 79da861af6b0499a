/**
 * A LAN of namespaced hosts: one manager and five agents, each a separate process in its own
 * network namespace behind a bridge, found over real mDNS multicast (no static peers); and an
 * independent DNS-SD client (python3-zeroconf) resolving what they announce.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliJson, runCli } from '../support/fleet.js'
import { compareTrees, seededBytes } from '../support/trees.js'
import { LanBed, requireLan, type LanHost } from '../support/lan.js'
import { startLanFleet, type LanFleet } from '../support/lan-fleet.js'
import { ensureZeroconf, zeroconfBrowse } from '../support/zeroconf-probe.js'
import { until } from '../support/wait.js'
import type { PeerListRow, RoundResult } from '../../src/roles/manager/manager.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'

const AGENTS = 5

describe('LAN: a manager and five agents on a bridged segment', function () {
  let root: string
  let bed: LanBed | undefined
  let lan: LanFleet
  let observer: LanHost

  before(async function () {
    requireLan(this)
    ensureZeroconf()
    root = mkdtempSync(join(tmpdir(), 'holdfast-lan-'))
    bed = LanBed.create()
    lan = await startLanFleet(bed, root, {
      agents: AGENTS,
      fill: (folder, i) => {
        mkdirSync(join(folder, 'docs'), { recursive: true })
        writeFileSync(join(folder, 'docs', 'note.txt'), `endpoint ${i}\n`.repeat(100))
        writeFileSync(join(folder, `data-${i}.bin`), seededBytes(`lan-${i}`, 512 * 1024 + i))
        writeFileSync(join(folder, 'common.bin'), seededBytes('lan-common', 256 * 1024))
      }
    })
    observer = bed.addHost('obs')
  })

  after(async function () {
    await lan?.fleet.stopAll()
    await bed?.destroy()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lan !== undefined) {
      process.stderr.write(`--- manager log ---\n${lan.fleet.log('manager')}\n`)
    }
  })

  it('the manager finds all five agents at their 198.18.0.x addresses over mDNS, backs them all up, and one restores bit-exact', async function () {
    const peers = await until('all five agents in holdfast peers', 30_000, async () => {
      const rows = await cliJson<PeerListRow[]>(['peers', '--socket', lan.fleet.managerSocket])
      const agents = rows.filter(p => p.role === 'agent' && p.addresses.length > 0)
      return agents.length === AGENTS ? agents : undefined
    })
    for (const a of lan.agents) {
      const row = peers.find(p => p.peerId === a.peerId)
      assert.ok(row !== undefined, `agent ${a.name} not listed`)
      assert.equal(row.source, 'mdns')
      assert.equal(row.name, a.name)
      const ip = a.host.ip.replaceAll('.', '\\.')
      assert.ok(row.addresses.length > 0)
      for (const addr of row.addresses) assert.match(addr, new RegExp(`^/ip4/${ip}/tcp/\\d+/p2p/${a.peerId}$`), `${a.name} listed at ${addr}`)
    }

    for (const a of lan.agents) await cliJson(['scan-now', '--socket', a.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', lan.fleet.managerSocket, '--expect-peers', String(AGENTS), '--timeout', '30'], { timeoutMs: 120_000 })
    assert.equal(round.peers.length, AGENTS)
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed: ${p.error ?? ''}`)
    // The scheduler's own timer may have pulled an agent between scan-now and backup-now, so
    // count what the store holds rather than what this one round moved.
    for (const a of lan.agents) {
      const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', lan.fleet.managerSocket, '--endpoint', a.name])
      assert.equal(snaps.length, 1, `${a.name}: one snapshot`)
    }

    const a3 = lan.agents[2]
    const target = join(root, 'restore-a3')
    const r = await runCli(['restore', '--socket', lan.fleet.managerSocket, '--endpoint', a3.peerId, '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(a3.folder, join(target, 'data-a3')), [])
  })

  it('python3-zeroconf on another host lists every _holdfast._tcp service and resolves each (SRV, TXT, address) within 3 s', async function () {
    const hosts = [lan.manager, ...lan.agents.map(a => a.host)]
    const found = await zeroconfBrowse(bed as LanBed, observer, hosts.length, 15, 3000)
    assert.equal(found.length, hosts.length, `listed: ${JSON.stringify(found)}`)
    const ipOf = new Map<string, string>([[lan.fleet.managerPeerId, lan.manager.ip], ...lan.agents.map(a => [a.peerId, a.host.ip] as [string, string])])
    const seen = new Set<string>()
    for (const f of found) {
      assert.ok(f.resolved, `${f.name} did not resolve within 3 s (${Math.round(f.ms)} ms)`)
      assert.ok(f.ms <= 3000, `${f.name} resolved in ${Math.round(f.ms)} ms`)
      const peer = f.txt?.peer ?? ''
      assert.ok(ipOf.has(peer), `${f.name}: TXT peer ${peer} is not one of the fleet`)
      seen.add(peer)
      assert.equal(f.txt?.port, String(f.port), `${f.name}: SRV port and TXT port agree`)
      // each instance resolves to its own host, and only to it
      assert.deepEqual(f.addresses, [ipOf.get(peer)], `${f.name} resolved to ${(f.addresses ?? []).join(', ')} (SRV target ${f.server ?? ''})`)
      assert.match(f.server ?? '', /\.local\.$/, `${f.name}: SRV target ${f.server ?? ''} is a .local host name`)
    }
    assert.equal(seen.size, hosts.length)
  })
})
