/**
 * Scale, small: one real manager (the CLI daemon) against 20 simulated agents in two processes
 * (real libp2p nodes serving the real manifest, fetch and ack services), found through static
 * peers. Every agent must be backed up within a bounded time (the scheduler ticks at least once
 * a second, so this bounds the ticks too), the manager's memory and CPU stay bounded, and
 * `peers` answers within 100 ms throughout. bench/scale.ts runs the same with 200.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ScaleRun, type ScaleResult } from '../support/scale-run.js'

const AGENTS = 20
/** 20 small pulls at k = 4: a few seconds; the bound leaves room for a loaded machine. */
const WITHIN_MS = 60_000
const MAX_RSS_KIB = 400 * 1024
/**
 * `peers` answers in 4-40 ms with 200 agents on a quiet machine (docs/benchmarks.md). While
 * pulls commit, the manager's main thread is held by synchronous pack fsyncs and catalog
 * commits, and on a shared 2-core runner (load 6) single calls then took up to ~0.9 s: the
 * median must stay under 100 ms, the worst call under 500 ms.
 */
const PEERS_MEDIAN_MS = 100
const PEERS_MAX_MS = 500

describe('scale (smoke): one manager, 20 simulated agents', function () {
  let root: string
  let run: ScaleRun | undefined
  let result: ScaleResult | undefined

  before(function () { root = mkdtempSync(join(tmpdir(), 'holdfast-scale-')) })
  after(async function () {
    await run?.stop()
    rmSync(root, { recursive: true, force: true })
  })
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && result !== undefined) process.stderr.write(`${JSON.stringify({ ...result, logs: undefined }, null, 2)}\n${result.logs()}\n`)
  })

  it('backs every agent up in bounded time; RSS, CPU and the peers call stay bounded', async function () {
    run = new ScaleRun(root)
    result = await run.run({ agents: AGENTS, processes: 2, timeoutMs: WITHIN_MS })
    const r = result
    process.stderr.write(`scale smoke: ${JSON.stringify({ ...r, logs: undefined })}\n`)
    assert.equal(r.backedUp, AGENTS, `${r.backedUp} of ${AGENTS} agents backed up within ${WITHIN_MS} ms`)
    assert.ok(r.allBackedUpMs !== undefined && r.allBackedUpMs <= WITHIN_MS)
    assert.ok(r.endFigures.vmHwmKiB <= MAX_RSS_KIB, `manager peak RSS ${r.endFigures.vmHwmKiB} KiB`)
    // CPU: well under one core on average while it works
    const cpuShare = (r.endFigures.cpuMs - r.startFigures.cpuMs) / (r.allBackedUpMs as number)
    assert.ok(cpuShare < 1, `the manager used ${(cpuShare * 100).toFixed(0)} % of a core`)
    assert.ok(r.peersCallMs.median < PEERS_MEDIAN_MS && r.peersCallMs.max < PEERS_MAX_MS, `peers took up to ${r.peersCallMs.max} ms (median ${r.peersCallMs.median})`)
  })
})
