/**
 * `holdfast node|agent --install-root DIR` as the systemd unit starts it: this process becomes
 * the upgrade supervisor (src/deploy/supervisor.ts) and runs the daemon as its child from
 * `DIR/current`, with the same arguments. The child knows it is supervised by the health file
 * the supervisor names in its environment, and runs the daemon itself; a package made current
 * makes it exit 75, and the supervisor starts the new version and rolls it back when it does
 * not report healthy in time. A root with no `current` yet is first given the code this
 * process runs from (bootstrap.ts).
 */
import { fileURLToPath } from 'node:url'
import { bootstrapCurrent } from '../deploy/bootstrap.js'
import { HEALTH_FILE_ENV, runSupervised } from '../deploy/supervisor.js'
import { HOLDFAST_VERSION } from '../version.js'

/** The project this process runs from (dist/src/daemon/ → the root). */
const PROJECT_DIR = fileURLToPath(new URL('../../../', import.meta.url))

/** True in the child the supervisor started (it named a health file for it). */
export function underSupervisor (): boolean {
  const file = process.env[HEALTH_FILE_ENV]
  return file !== undefined && file !== ''
}

export interface SuperviseOptions {
  /** How long a version just switched to has to report healthy (default: the supervisor's, 120 s). */
  healthDeadlineMs?: number
}

export async function superviseDaemon (role: 'node' | 'agent', configFile: string, installRoot: string, options: SuperviseOptions = {}): Promise<number> {
  const log = (line: string): void => { process.stderr.write(`holdfast supervisor: ${line}\n`) }
  const booted = await bootstrapCurrent(installRoot, PROJECT_DIR, HOLDFAST_VERSION)
  if (booted !== undefined) log(`${installRoot} had no current version: installed the code this runs from (${PROJECT_DIR}) as ${booted}`)
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    return await runSupervised({
      installRoot,
      // the supervisor's own options stay here: the child (any version) needs only these
      args: [role, '--config', configFile, '--install-root', installRoot],
      signal: stop.signal,
      log,
      ...(options.healthDeadlineMs === undefined ? {} : { healthDeadlineMs: options.healthDeadlineMs })
    })
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
