/**
 * bench:budget — the bandwidth budget's split over shaped links, on the LAN test bed (needs
 * root: network namespaces on a bridge, 198.18.0.0/24, nothing leaves the machine). One
 * manager, four agents on 4 Mbit/s tbf links, B = 8 Mbit/s: each pull's rate and the total
 * over a 30 s window, from the bridge ports' counters, and how soon the others take up the
 * share of a pull that ends. Writes JSON to bench/results/.
 *
 *   npm run bench:budget [-- --window 30 --agents 4 --budget 1000000]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { LanBed, lanUnavailable } from '../test/support/lan.js'
import { measureBudgetSplit } from '../test/support/budget-split.js'
import { machineFacts, say, sourceRevision } from './support.js'

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const { values } = parseArgs({ options: { window: { type: 'string' }, agents: { type: 'string' }, budget: { type: 'string' }, link: { type: 'string' } } })
const why = lanUnavailable()
if (why !== undefined) { say(`bench:budget cannot run: ${why}`); process.exit(1) }
const options = { agents: Number(values.agents ?? 4), budget: Number(values.budget ?? 1_000_000), linkBits: Number(values.link ?? 4_000_000), windowMs: Number(values.window ?? 30) * 1000 }
const root = mkdtempSync(join(tmpdir(), 'holdfast-bench-budget-'))
const bed = LanBed.create()
let fleetStop: (() => Promise<void>) | undefined
try {
  say(`budget: ${options.agents} pulls, B = ${options.budget} B/s, links ${options.linkBits} bit/s, ${options.windowMs / 1000} s window`)
  const { lan, result } = await measureBudgetSplit(bed, root, options)
  fleetStop = async () => { await lan.fleet.stopAll() }
  const out = { bench: 'budget', date: new Date().toISOString(), machine: machineFacts(), source: sourceRevision(projectRoot), options, ...result, logs: undefined }
  say(JSON.stringify(out, null, 2))
  const dir = join(projectRoot, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `budget-${out.date.slice(0, 10)}.json`)
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n')
  say(`written to ${file}`)
} finally {
  await fleetStop?.()
  await bed.destroy()
  rmSync(root, { recursive: true, force: true })
}
