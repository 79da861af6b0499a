/**
 * Runs `<installRoot>/current/bin/holdfast.js <args>` as a child and keeps the upgrade promise:
 * a version just switched to must report healthy within a deadline, or the supervisor switches
 * `current` back to the version before it, records why, and runs that one instead
 * (docs/architecture.md, "Packages and upgrades").
 *
 * The child's side of the contract:
 * - `reportHealthy()` once it is up and reachable (the node role calls it): it writes the file
 *   named by $HOLDFAST_HEALTH_FILE (a file, not IPC, so it works from a worker thread and
 *   across the bin script's dynamic import);
 * - exit with EXIT_RESTART_INTO_CURRENT (75, EX_TEMPFAIL) after switching `current` to ask to be
 *   started again from the new version;
 * - any other exit is passed up as the supervisor's own exit code (systemd's Restart= restarts
 *   a version that has proven healthy; the supervisor does not loop on its own).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, watch, type FSWatcher } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { systemClock, type Clock } from '../util/clock.js'
import { writeFileDurable } from '../util/durable-file.js'
import { HoldfastError } from '../util/errors.js'
import { effectiveState, markHealthy, rollback, CURRENT_LINK } from './version-switch.js'
import { writeUpgradeState } from './upgrade-state.js'

/** The exit code a child uses to ask "restart me into current" (EX_TEMPFAIL). */
export const EXIT_RESTART_INTO_CURRENT = 75
/** Where the child reports health: set by the supervisor in the child's environment. */
export const HEALTH_FILE_ENV = 'HOLDFAST_HEALTH_FILE'

/**
 * Called by the child once it is up and reachable. A no-op when not run under a supervisor.
 * Idempotent.
 */
export function reportHealthy (info: { version?: string } = {}): void {
  const file = process.env[HEALTH_FILE_ENV]
  if (file === undefined || file === '') return
  writeFileDurable(file, JSON.stringify({ pid: process.pid, at: new Date().toISOString(), ...info }) + '\n', 0o600)
}

export interface SupervisorOptions {
  installRoot: string
  /** Arguments after bin/holdfast.js, e.g. ['node', '--data-dir', '/var/lib/holdfast']. */
  args: string[]
  clock?: Clock
  /** How long a version just switched to has to report healthy (default 120 s). */
  healthDeadlineMs?: number
  /** After SIGTERM, how long before SIGKILL (default 10 s). */
  killGraceMs?: number
  /** Starts of one switched version (across supervisor restarts) before it is rolled back unheard (default 3). */
  maxAttempts?: number
  /** Default: the Node running the supervisor. */
  nodePath?: string
  env?: NodeJS.ProcessEnv
  stdio?: 'inherit' | 'ignore'
  /** Aborting stops the child (SIGTERM, then SIGKILL) and returns. */
  signal?: AbortSignal
  log?: (line: string) => void
  /** Each child as it starts (tests read its pid). */
  onChild?: (child: ChildProcess, version: string) => void
}

type Outcome =
  | { kind: 'exit', code: number, healthy: boolean }
  | { kind: 'timeout' }
  | { kind: 'aborted', code: number }

/** A bound on restarts into current within one supervisor run: each needs a switch by the child. */
const MAX_ROUNDS = 50

export async function runSupervised (opts: SupervisorOptions): Promise<number> {
  const clock = opts.clock ?? systemClock
  const deadlineMs = opts.healthDeadlineMs ?? 120_000
  const maxAttempts = opts.maxAttempts ?? 3
  const log = opts.log ?? ((line: string) => { process.stderr.write(`holdfast supervisor: ${line}\n`) })
  const runDir = join(opts.installRoot, 'run')
  mkdirSync(runDir, { recursive: true, mode: 0o700 })

  for (let round = 0; round < MAX_ROUNDS; round++) {
    if (opts.signal?.aborted === true) return 0
    const state = effectiveState(opts.installRoot)
    if (state === undefined) throw new HoldfastError('UPGRADE_FAILED', `${join(opts.installRoot, CURRENT_LINK)} does not exist: nothing is installed`)
    const version = state.current
    const awaiting = state.phase === 'switched'
    if (awaiting) {
      // the attempt is counted before the start, so a version that takes the whole machine down
      // (or a supervisor killed during the wait) is not retried for ever
      if (state.attempts >= maxAttempts) {
        if (await goBack(opts.installRoot, `${state.attempts} starts without a health report`, clock, log) === undefined) return 1
        continue
      }
      writeUpgradeState(opts.installRoot, { ...state, attempts: state.attempts + 1 })
    }
    const healthFile = join(runDir, `health-${process.pid}-${round}`)
    rmSync(healthFile, { force: true })
    const child = spawn(opts.nodePath ?? process.execPath, [join(opts.installRoot, CURRENT_LINK, 'bin', 'holdfast.js'), ...opts.args], {
      stdio: opts.stdio ?? 'inherit',
      env: { ...(opts.env ?? process.env), [HEALTH_FILE_ENV]: healthFile }
    })
    opts.onChild?.(child, version)
    log(`started ${version} (pid ${child.pid ?? '?'})${awaiting ? `, awaiting its health report within ${Math.round(deadlineMs / 1000)} s` : ''}`)
    const outcome = await watchChild(child, healthFile, awaiting ? deadlineMs : undefined, clock, opts, () => {
      if (awaiting) { markHealthy(opts.installRoot, version, clock.now()); log(`${version} reported healthy`) }
    })
    rmSync(healthFile, { force: true })
    if (outcome.kind === 'aborted') return outcome.code
    // a stop asked for (systemctl stop) is not a failed upgrade, even when the child's exit
    // from our SIGTERM is seen before the abort's own outcome
    if (stopRequested(opts.signal)) return outcome.kind === 'exit' ? outcome.code : await stop(child, opts.killGraceMs ?? 10_000, clock)
    if (outcome.kind === 'timeout') {
      await stop(child, opts.killGraceMs ?? 10_000, clock)
      if (await goBack(opts.installRoot, `no health report within ${Math.round(deadlineMs / 1000)} s`, clock, log) === undefined) return 1
      continue
    }
    if (outcome.code === EXIT_RESTART_INTO_CURRENT) { log(`${version} asked to be restarted into current`); continue }
    if (awaiting && !outcome.healthy) {
      if (await goBack(opts.installRoot, `exited with code ${outcome.code} before reporting healthy`, clock, log) === undefined) return outcome.code === 0 ? 1 : outcome.code
      continue
    }
    return outcome.code
  }
  throw new HoldfastError('UPGRADE_FAILED', `more than ${MAX_ROUNDS} restarts into current in one run`)
}

/** A function, not an inline test: the compiler narrows `signal.aborted` across the await before it. */
const stopRequested = (signal: AbortSignal | undefined): boolean => signal?.aborted === true

async function goBack (installRoot: string, reason: string, clock: Clock, log: (line: string) => void): Promise<string | undefined> {
  const failed = effectiveState(installRoot)?.current
  const to = await rollback(installRoot, reason, clock.now())
  log(to === undefined ? `${failed ?? '?'} failed (${reason}) and there is no previous version to go back to` : `rolled back from ${failed ?? '?'} to ${to}: ${reason}`)
  return to
}

/** Waits for the child's exit, its health report (then still its exit), the deadline, or an abort. */
async function watchChild (child: ChildProcess, healthFile: string, deadlineMs: number | undefined, clock: Clock, opts: SupervisorOptions, onHealthy: () => void): Promise<Outcome> {
  let healthy = false
  let watcher: FSWatcher | undefined
  const timers = new AbortController()
  const check = (): void => {
    if (healthy || !existsSync(healthFile)) return
    healthy = true
    watcher?.close()
    onHealthy()
  }
  try {
    // inotify tells us at once; the poll on the clock below is the fallback
    watcher = watch(dirname(healthFile), (_event, name) => { if (name === basename(healthFile)) check() })
    watcher.on('error', () => {})
    const exited = new Promise<Outcome>(resolve => {
      const done = (code: number | null, sig: NodeJS.Signals | null): void => { check(); resolve({ kind: 'exit', code: code ?? (sig !== null ? 128 + signalNumber(sig) : 1), healthy }) }
      if (child.exitCode !== null || child.signalCode !== null) done(child.exitCode, child.signalCode)
      else child.once('exit', done)
      child.once('error', () => resolve({ kind: 'exit', code: 127, healthy: false }))
    })
    const racers: Array<Promise<Outcome>> = [exited]
    if (deadlineMs !== undefined) {
      racers.push(clock.sleep(deadlineMs, timers.signal).then((): Outcome | Promise<Outcome> => { check(); return healthy ? exited : { kind: 'timeout' } }, () => new Promise<Outcome>(() => {})))
    }
    if (opts.signal !== undefined) {
      const signal = opts.signal
      racers.push(new Promise<Outcome>(resolve => {
        const onAbort = (): void => { void stop(child, opts.killGraceMs ?? 10_000, clock).then(code => resolve({ kind: 'aborted', code })) }
        if (signal.aborted) onAbort(); else signal.addEventListener('abort', onAbort, { once: true })
      }))
    }
    void (async () => {
      while (!timers.signal.aborted && !healthy) {
        try { await clock.sleep(1000, timers.signal) } catch { return }
        check()
      }
    })()
    check()
    return await Promise.race(racers)
  } finally {
    timers.abort()
    watcher?.close()
  }
}

/** SIGTERM, then SIGKILL after the grace; resolves with the exit code. */
async function stop (child: ChildProcess, graceMs: number, clock: Clock): Promise<number> {
  if (child.exitCode !== null) return child.exitCode
  if (child.signalCode !== null) return 128 + signalNumber(child.signalCode)
  const exited = new Promise<number>(resolve => child.once('exit', (code, sig) => resolve(code ?? (sig !== null ? 128 + signalNumber(sig) : 1))))
  child.kill('SIGTERM')
  const grace = new AbortController()
  const killed = clock.sleep(graceMs, grace.signal).then(() => { child.kill('SIGKILL'); return exited }, async () => await exited)
  const code = await Promise.race([exited, killed])
  grace.abort()
  return code
}

/** The shell's convention: a child killed by signal N exits 128 + N. */
function signalNumber (sig: NodeJS.Signals): number {
  return osConstants.signals[sig] ?? 0
}
