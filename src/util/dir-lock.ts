/**
 * One daemon per data directory. Two managers on one directory destroy data (the second's
 * pack recovery truncates the first's uncommitted pack tail, which the first then commits and
 * acks), so a daemon takes this lock before it opens anything else there.
 *
 * Node has no flock/fcntl, so the lock is SQLite's: `daemon.lock` is opened with
 * locking_mode EXCLUSIVE and a write transaction is begun and never ended. SQLite then holds
 * a POSIX fcntl write lock on the file, which the kernel drops when the process dies, kill -9
 * included: no stale lock to clean up. SQLite also tracks its locks per process, so a second
 * attempt from another thread of the same process fails the same way. busy_timeout 0: a
 * second daemon fails at once rather than waiting for the first to exit.
 */
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { HoldfastError } from './errors.js'
import { writeFileDurable } from './durable-file.js'

export const LOCK_FILE = 'daemon.lock'
/** The holder's pid, for the error a second daemon prints (the lock itself carries none). */
export const PID_FILE = 'daemon.pid'

const SQLITE_BUSY = 5
const SQLITE_LOCKED = 6

/** Hold a reference for as long as the lock is needed: a collected lock is a released one. */
export interface DirLock {
  readonly dataDir: string
  /** Lets the next daemon in. Idempotent. */
  release: () => void
}

export function lockDataDir (dataDir: string): DirLock {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const db = new DatabaseSync(join(dataDir, LOCK_FILE))
  try {
    db.exec('PRAGMA busy_timeout = 0')
    db.exec('PRAGMA locking_mode = EXCLUSIVE')
    db.exec('BEGIN EXCLUSIVE')
  } catch (err) {
    db.close()
    if (!isBusy(err)) throw err
    const pid = readHolderPid(dataDir)
    throw new HoldfastError('DATA_DIR_LOCKED',
      `data directory ${dataDir} is in use by another holdfast daemon (${pid === undefined ? 'pid unknown' : `pid ${pid}`}); stop it first`,
      { dataDir, pid }, { cause: err })
  }
  // Written only once the lock is held, so a pid found here while the lock is held is the
  // holder's (or, for the instant before this write, the previous holder's).
  writeFileDurable(join(dataDir, PID_FILE), `${process.pid}\n`, 0o600)
  let held = true
  return {
    dataDir,
    release: () => {
      if (!held) return
      held = false
      // The pid file stays: a stale pid there is harmless, and removing it would race the
      // next holder's write.
      db.close()
    }
  }
}

function isBusy (err: unknown): boolean {
  const code = (err as { errcode?: unknown }).errcode
  return typeof code === 'number' && ((code & 0xff) === SQLITE_BUSY || (code & 0xff) === SQLITE_LOCKED)
}

function readHolderPid (dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, PID_FILE), 'utf8').trim())
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}
