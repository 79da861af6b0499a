/**
 * The scheduler's tick at fleet sizes one machine cannot simulate with real nodes: the real
 * PeerTable and Scheduler on a ManualClock, n agents (static addresses), visits that never
 * end (k slots full, as in a busy round), so each tick walks the whole table and starts
 * nothing. Prints the time per tick and per `status` of every peer (what `peers` computes).
 * A round has at least one tick per visit, so per-round cost ≈ n × tick.
 *
 *   node dist/bench/scheduler-tick.js [n…]
 */
import { multiaddr } from '@multiformats/multiaddr'
import { PeerTable } from '../src/roles/manager/peer-table.js'
import { Scheduler, type VisitOutcome } from '../src/roles/manager/scheduler/scheduler.js'
import { BandwidthBudget } from '../src/roles/manager/scheduler/bandwidth-budget.js'
import { ManualClock } from '../src/util/clock.js'
import { silentLogger } from '../src/util/log.js'

const sizes = process.argv.slice(2).map(Number)
const results: Array<{ n: number, tickMs: number, statusAllMs: number, roundTickCpuS: number }> = []
for (const n of sizes.length > 0 ? sizes : [200, 1000, 5000]) {
  const clock = new ManualClock(1_000_000)
  const table = new PeerTable({ addressTtlMs: 24 * 3_600_000 })
  for (let i = 0; i < n; i++) {
    const id = `12D3KooWPeer${String(i).padStart(6, '0')}`
    table.upsert({ peerId: id, addrs: [multiaddr(`/ip4/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/tcp/4001`)], role: 'agent', version: '1', name: `host${i}`, source: 'static' }, clock.now())
  }
  const budget = new BandwidthBudget({ bytesPerSecond: 1_000_000 }, clock.now)
  // visits that never end: the k slots stay full and every tick finds everyone else waiting
  const never = new Promise<VisitOutcome>(() => {})
  const s = new Scheduler({ clock, table, visit: async () => await never, budget, log: silentLogger, maxConcurrent: 4, intervalMs: 3_600_000, sliceMs: 300_000, maxAgeMs: 24 * 3_600_000 })
  await clock.advance(10_000) // everyone due
  s.tick()
  const ticks = Math.max(5, Math.round(200_000 / n))
  let t0 = performance.now()
  for (let i = 0; i < ticks; i++) s.tick()
  const tickMs = (performance.now() - t0) / ticks
  t0 = performance.now()
  for (const p of table.agents()) s.status(p)
  const statusAllMs = performance.now() - t0
  results.push({ n, tickMs: Math.round(tickMs * 100) / 100, statusAllMs: Math.round(statusAllMs * 100) / 100, roundTickCpuS: Math.round(tickMs * n / 10) / 100 })
}
process.stdout.write(JSON.stringify(results, null, 2) + '\n')
process.exit(0)
