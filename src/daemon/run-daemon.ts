/**
 * Runs a daemon (agent, manager or bare node) on the main thread of this process, with V8's
 * young generation bounded. Without a bound V8 grows the young generation to tens of MB under a
 * scan's allocation rate, and the agent's memory budget is 128 MiB. That bound can only be set
 * when the process starts, so the process first replaces itself (`process.execve`: same pid,
 * so a supervisor, systemd or a test harness still holds the right process and its signals)
 * with `node <flags> <the same script and arguments>`. This used to be a worker thread with
 * resourceLimits; a second isolate (the CLI's main thread, idle for the daemon's whole life)
 * cost about 50 MiB of the agent's RSS.
 *
 * SIGINT/SIGTERM stop the daemon in reverse order of start; a second signal kills the process.
 */
import { loadConfig } from '../config/config.js'
import { createLogger } from '../util/log.js'
import { systemClock } from '../util/clock.js'
import { describeError, errorCode } from '../util/errors.js'
import { lockDataDir, type DirLock } from '../util/dir-lock.js'
import { EXIT_RESTART_INTO_CURRENT, reportHealthy } from '../deploy/supervisor.js'
import { HOLDFAST_VERSION } from '../version.js'

export type DaemonRole = 'agent' | 'manager' | 'node'

/** "Restart me into `current`": the exit status a supervisor restarts on (EX_TEMPFAIL). */
export const EXIT_RESTART = EXIT_RESTART_INTO_CURRENT

/**
 * V8 flags of a daemon process. 4 MiB semispaces: a young generation of about 12 MiB, the
 * bound the daemon's worker thread had (maxYoungGenerationSizeMb 16). 1 MiB saved a further
 * 5-10 MiB on a 94 MB sample of corpus A at no CPU cost visible in two runs; not adopted until
 * measured on corpus A, where the scan allocates more. A caller's own --max-semi-space-size
 * (on the command line or in NODE_OPTIONS) is left alone.
 */
export const DAEMON_V8_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=4'])

export interface DaemonExit {
  exitCode: number
  /** Set when the daemon failed to start. */
  failure?: { code: string, message: string }
}

/** True when this process runs with a young-generation bound, ours or one its caller chose. */
export function heapFlagsApplied (execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): boolean {
  return [...execArgv, ...nodeOptions.split(/\s+/)].some(a => a.startsWith('--max-semi-space-size'))
}

/**
 * Replaces this process with itself run under DAEMON_V8_FLAGS, unless the flags are already
 * in force (then it returns). Call before anything is opened or written: nothing of this
 * process survives but its pid and its standard streams.
 */
export function reexecWithHeapFlags (): void {
  if (heapFlagsApplied() || process.execve === undefined) return
  const script = process.argv[1]
  if (script === undefined) return
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...DAEMON_V8_FLAGS, script, ...process.argv.slice(2)], process.env)
}

/** installRoot: where packages go (`--install-root`); absent, the host takes none (nothing would restart it into one). */
export async function runDaemonProcess (role: DaemonRole, configFile: string, installRoot?: string): Promise<DaemonExit> {
  const log = createLogger(role)
  let lock: DirLock | undefined
  let restart = false
  let started = false
  let stopRequested = false
  let stop = (): void => { stopRequested = true }
  // A stop asked for while the role is still starting waits for the start to finish (as a
  // message to the old daemon thread did), so stop never runs beside a half-done start.
  const onSignal = (): void => { stop() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const config = loadConfig(configFile)
    // Before the role opens its databases or recovers anything: a second daemon on this
    // directory must stop here, not after it has truncated the first one's packs or taken over
    // its admin socket (AdminServer removes a dead socket it finds; a live one it refuses).
    lock = lockDataDir(config.dataDir)
    const heldLock = lock
    const onRestart = (): void => { restart = true; stop() }
    // Only the role's own modules: the manager's store and catalog are no part of an agent.
    const daemon = role === 'agent'
      ? new (await import('../roles/agent/agent.js')).Agent(config, systemClock, log, { restart: onRestart, installRoot })
      : role === 'node'
        ? new (await import('../roles/node/node-daemon.js')).NodeDaemon(config, systemClock, log, onRestart, installRoot)
        : new (await import('../roles/manager/manager.js')).Manager(config, systemClock, log)
    let stopped = (): void => {}
    const ended = new Promise<void>(resolve => { stopped = resolve })
    let stopping: Promise<void> | undefined
    const stopNow = (): void => {
      stopping ??= daemon.stop().catch(err => { log.error('stop failed', { err: describeError(err) }) }).finally(() => {
        heldLock.release()
        stopped()
      })
    }
    stop = () => { if (started) stopNow(); else stopRequested = true }
    await daemon.start()
    started = true
    // The health condition of an upgrade (docs/architecture.md, "Packages and upgrades"): the
    // role started in full — config loaded, data dir locked, listening, every protocol served,
    // mDNS announcing this version, the admin socket answering. A version that cannot get this
    // far is rolled back by the supervisor. A no-op when not run under one.
    reportHealthy({ version: HOLDFAST_VERSION })
    if (stopRequested) stopNow()
    await ended
    return { exitCode: restart ? EXIT_RESTART : 0 }
  } catch (err) {
    lock?.release()
    return { exitCode: 1, failure: { code: errorCode(err), message: describeError(err) } }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
