/**
 * `npm run fuzz`: runs the fuzz layer (test/fuzz) with FUZZ_RUNS generated inputs in total
 * (default 1,000,000; `npm run fuzz -- 200000` for fewer) and prints the count and time per
 * property. Needs no network namespace: every decoder is fed in memory. Node runs with
 * --expose-gc so the harness can measure what a run leaves behind.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const runs = process.argv[2] ?? process.env.FUZZ_RUNS ?? '1000000'
const dir = mkdtempSync(join(tmpdir(), 'holdfast-fuzz-'))
const report = join(dir, 'report.jsonl')
const mocha = join(root, 'node_modules', 'mocha', 'bin', 'mocha.js')
const started = performance.now()
const r = spawnSync(process.execPath, ['--expose-gc', mocha, '--timeout', '0', '--forbid-only', '--reporter', 'dot', 'dist/test/fuzz/*.test.js'], {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, FUZZ_RUNS: runs, FUZZ_REPORT: report }
})
const seconds = (performance.now() - started) / 1000

interface Row { name: string, runs: number, ms: number, peakMiB: number, retainedMiB: number }
let rows: Row[] = []
try { rows = readFileSync(report, 'utf8').trim().split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Row) } catch {}
rmSync(dir, { recursive: true, force: true })

const width = Math.max(...rows.map(row => row.name.length), 8)
process.stdout.write(`\n${'property'.padEnd(width)}  ${'inputs'.padStart(9)}  ${'seconds'.padStart(8)}  ${'µs/input'.padStart(9)}  peak MiB\n`)
for (const row of rows) {
  process.stdout.write(`${row.name.padEnd(width)}  ${String(row.runs).padStart(9)}  ${(row.ms / 1000).toFixed(1).padStart(8)}  ${(row.ms * 1000 / Math.max(row.runs, 1)).toFixed(0).padStart(9)}  ${row.peakMiB.toFixed(1).padStart(8)}\n`)
}
const total = rows.reduce((a, row) => a + row.runs, 0)
process.stdout.write(`${'total'.padEnd(width)}  ${String(total).padStart(9)}  ${seconds.toFixed(1).padStart(8)}  (node ${process.version}, FUZZ_RUNS=${runs}, ${rows.length} properties)\n`)
if (r.status === 0 && total < Number(runs)) {
  process.stderr.write(`fuzz: only ${total} inputs ran, fewer than the ${runs} asked for\n`)
  process.exit(1)
}
process.exit(r.status ?? 1)
