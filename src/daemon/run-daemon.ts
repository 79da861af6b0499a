/**
 * Starts a daemon (agent or manager) in a worker thread of this process and waits for it to
 * end. The worker is what lets the daemon's heap be bounded (see daemon-thread.ts); this side
 * only forwards SIGINT/SIGTERM as a stop request, so shutdown runs in reverse order of start.
 */
import { Worker } from 'node:worker_threads'
import type { DaemonThreadData, DaemonThreadMessage } from './daemon-thread.js'
import { EXIT_RESTART_INTO_CURRENT } from '../deploy/supervisor.js'

export type DaemonRole = DaemonThreadData['role']

/** "Restart me into `current`": the exit status a supervisor restarts on (EX_TEMPFAIL). */
export const EXIT_RESTART = EXIT_RESTART_INTO_CURRENT

export interface DaemonExit {
  /** The worker's exit code. */
  exitCode: number
  /** Set when the daemon failed to start or failed while running. */
  failure?: { code: string, message: string }
}

export async function runDaemonThread (role: DaemonRole, configFile: string, installRoot?: string): Promise<DaemonExit> {
  const worker = new Worker(new URL('./daemon-thread.js', import.meta.url), {
    workerData: { role, configFile, ...(installRoot === undefined ? {} : { installRoot }) } satisfies DaemonThreadData,
    resourceLimits: { maxYoungGenerationSizeMb: 16 }
  })
  let failure: DaemonExit['failure']
  let restart = false
  worker.on('message', (msg: DaemonThreadMessage) => {
    if (msg.kind === 'failed') failure = { code: msg.code, message: msg.message }
    if (msg.kind === 'restart') restart = true
  })
  const onSignal = (): void => { worker.postMessage('stop') }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const exitCode = await new Promise<number>(resolve => worker.once('exit', resolve))
    if (restart && failure === undefined) return { exitCode: EXIT_RESTART }
    return failure === undefined ? { exitCode } : { exitCode, failure }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
