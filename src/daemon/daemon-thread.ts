/**
 * Runs a daemon (agent or manager) inside a worker thread. The point is the heap limits a
 * worker can be given and the main thread cannot after start: without them V8 grows the young
 * generation to 128 MB under a scan's allocation rate, and the agent's memory budget is
 * 200 MB. The main thread (src/cli/main.ts) only forwards signals; kill -9 still takes the
 * whole process at once.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { loadConfig } from '../config/config.js'
import { createLogger } from '../util/log.js'
import { systemClock } from '../util/clock.js'
import { describeError, errorCode } from '../util/errors.js'
import { lockDataDir, type DirLock } from '../util/dir-lock.js'
import { reportHealthy } from '../deploy/supervisor.js'
import { HOLDFAST_VERSION } from '../version.js'

/** installRoot: where packages go (`--install-root`); absent, the host takes none (nothing would restart it into one). */
export interface DaemonThreadData { role: 'agent' | 'manager' | 'node', configFile: string, installRoot?: string }
/** 'restart': a new version is current; the process exits with EXIT_RESTART for its supervisor. */
export type DaemonThreadMessage = { kind: 'started' } | { kind: 'failed', code: string, message: string } | { kind: 'stopped' } | { kind: 'restart' }

const { role, configFile, installRoot } = workerData as DaemonThreadData
const log = createLogger(role)

let lock: DirLock | undefined
try {
  const config = loadConfig(configFile)
  // Before the role opens its databases or recovers anything: a second daemon on this
  // directory must stop here, not after it has truncated the first one's packs or taken over
  // its admin socket (AdminServer removes a dead socket it finds; a live one it refuses).
  lock = lockDataDir(config.dataDir)
  const { Agent } = await import('../roles/agent/agent.js')
  const { Manager } = await import('../roles/manager/manager.js')
  const { NodeDaemon } = await import('../roles/node/node-daemon.js')
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    void daemon.stop().catch(err => { log.error('stop failed', { err: describeError(err) }) }).finally(() => {
      lock?.release()
      parentPort?.postMessage({ kind: 'stopped' } satisfies DaemonThreadMessage)
      parentPort?.close()
    })
  }
  const restart = (): void => {
    parentPort?.postMessage({ kind: 'restart' } satisfies DaemonThreadMessage)
    stop()
  }
  const daemon = role === 'agent' ? new Agent(config, systemClock, log, { restart, installRoot }) : role === 'node' ? new NodeDaemon(config, systemClock, log, restart, installRoot) : new Manager(config, systemClock, log)
  await daemon.start()
  // The health condition of an upgrade (docs/architecture.md, "Packages and upgrades"): the
  // role started in full — config loaded, data dir locked, listening, every protocol served,
  // mDNS announcing this version, the admin socket answering. A version that cannot get this
  // far is rolled back by the supervisor. A no-op when not run under one.
  reportHealthy({ version: HOLDFAST_VERSION })
  parentPort?.postMessage({ kind: 'started' } satisfies DaemonThreadMessage)
  parentPort?.on('message', (msg: unknown) => {
    if (msg === 'stop') stop()
  })
} catch (err) {
  lock?.release()
  parentPort?.postMessage({ kind: 'failed', code: errorCode(err), message: describeError(err) } satisfies DaemonThreadMessage)
  parentPort?.close()
  // A start that failed midway (e.g. the admin socket refused after the libp2p node was up)
  // may leave listeners and timers behind that would keep this thread, and so the daemon,
  // alive; in a worker, exit ends this thread only, after the message above is delivered.
  setImmediate(() => { process.exit(1) })
}
