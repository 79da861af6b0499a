/**
 * bench:scale — one real manager (the CLI daemon) against 200 simulated agents (4 processes ×
 * 50 libp2p nodes serving the real manifest, fetch and ack services, three 16 KiB files each),
 * found through static peers, inside a private network namespace (loopback only). Records the
 * time until every agent is backed up once, the manager's peak RSS and CPU, the `peers` admin
 * call's latency and the catalog's size, and writes JSON to bench/results/.
 *
 *   npm run bench:scale [-- --agents N --processes P --k K --profile DIR (the manager's CPU profile)]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { reexecInPrivateNetns } from '../test/support/netns.js'
import { ScaleRun } from '../test/support/scale-run.js'
import { machineFacts, say, sourceRevision } from './support.js'

const self = fileURLToPath(import.meta.url)
const projectRoot = join(dirname(self), '..', '..')

const outside = reexecInPrivateNetns([process.execPath, self, ...process.argv.slice(2)])
if (outside !== undefined) process.exit(outside)

const { values } = parseArgs({ options: { agents: { type: 'string' }, processes: { type: 'string' }, k: { type: 'string' }, profile: { type: 'string' } } })
const agents = Number(values.agents ?? 200)
const processes = Number(values.processes ?? 4)
const root = mkdtempSync(join(tmpdir(), 'holdfast-bench-scale-'))
const run = new ScaleRun(root)
try {
  say(`scale: ${agents} simulated agents in ${processes} processes against one manager`)
  const r = await run.run({ agents, processes, timeoutMs: 600_000, maxConcurrentPulls: values.k === undefined ? undefined : Number(values.k), managerEnv: values.profile === undefined ? undefined : { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${values.profile}` } })
  const out = {
    bench: 'scale',
    date: new Date().toISOString(),
    machine: machineFacts(),
    source: sourceRevision(projectRoot),
    ...r,
    logs: undefined,
    cpuMsDuring: r.endFigures.cpuMs - r.startFigures.cpuMs
  }
  say(JSON.stringify(out, null, 2))
  const dir = join(projectRoot, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `scale-${out.date.slice(0, 10)}-${agents}.json`)
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n')
  say(`written to ${file}`)
  if (r.backedUp < agents) { say(r.logs()); process.exitCode = 1 }
} finally {
  await run.stop()
  rmSync(root, { recursive: true, force: true })
}
