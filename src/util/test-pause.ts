/**
 * TEST-ONLY kill points for the crash rounds (test/e2e/crash-rounds.test.ts). Random kill
 * times hit the short windows of the commit order (pack synced but catalog not committed,
 * committed but not acked) only by chance, so a test names the step it wants to kill at:
 *
 *   HOLDFAST_TEST_PAUSE_AT=<step>
 *
 * read once, when this module loads. The first time the daemon reaches that step it writes
 * one line to stderr (TEST_PAUSE_MARK, the step and its pid) and blocks its thread, so
 * nothing past the step happens before the test's kill -9. Unset (always, outside those
 * tests), a step costs one comparison. Never set it in production: the daemon would stall.
 */
import { writeSync } from 'node:fs'
import { HoldfastError } from './errors.js'

export const TEST_PAUSE_STEPS = [
  /** The agent handed a batch of files to its staging workers: a set is 'staging'. */
  'stage-batch',
  /** The agent sealed a set (one transaction), before the staging round returns. */
  'stage-sealed',
  /** The manager appended a set's chunks to a pack and fsynced it; the catalog commit is next. */
  'pull-packed',
  /** The manager committed the snapshot; the ack to the agent is next. */
  'pull-committed'
] as const
export type TestPauseStep = typeof TEST_PAUSE_STEPS[number]

export const TEST_PAUSE_MARK = 'HOLDFAST_TEST_PAUSED'
/** Bounded, so a test that forgets to kill does not leave a daemon stuck for good. */
const PAUSE_MS = 60_000

const armed = parse(process.env.HOLDFAST_TEST_PAUSE_AT)
let fired = false

function parse (value: string | undefined): TestPauseStep | undefined {
  if (value === undefined || value === '') return undefined
  const step = TEST_PAUSE_STEPS.find(s => s === value)
  if (step === undefined) throw new HoldfastError('CONFIG_INVALID', `HOLDFAST_TEST_PAUSE_AT must be one of ${TEST_PAUSE_STEPS.join(', ')}: '${value}'`)
  return step
}

/** Test-only: stops here (once) when HOLDFAST_TEST_PAUSE_AT names this step; otherwise nothing. */
export function testPausePoint (step: TestPauseStep): void {
  if (armed !== step || fired) return
  fired = true
  // Straight to the file descriptor: process.stderr in a worker thread goes through the main
  // thread asynchronously, and this thread is about to block.
  writeSync(2, `${TEST_PAUSE_MARK} ${step} pid=${process.pid}\n`)
  // Blocks this thread itself, not only the task that got here: no other callback of the
  // daemon (an ack, the next batch) runs past the step before the kill.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, PAUSE_MS)
}
