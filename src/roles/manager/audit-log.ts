/**
 * The manager's audit log: who did what to the fleet and its store, as JSON lines in
 * <dataDir>/audit.log, each appended and fsynced before the command's reply (an entry is on
 * disk when the admin sees the result). Read back by `holdfast audit [--since T] [--json]`.
 *
 * The actor is the admin socket's peer: its uid, pid and user name as found by
 * admin/peer-credentials.ts (Node has no SO_PEERCRED), or uid "unknown" with the reason the
 * lookup failed. docs/security.md, "Audit log".
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs'
import { HoldfastError } from '../../util/errors.js'
import type { AdminPeer } from '../../admin/peer-credentials.js'

export type AuditCommand = 'restore' | 'prune' | 'retention-set' | 'backup-now' | 'join' | 'approve' | 'revoke' | 'token-create' | 'token-revoke' | 'peers-add' | 'peers-remove' | 'config-change' | 'deploy'

export interface AuditEntry {
  /** ms since the epoch. */
  time: number
  /**
   * The admin socket's peer (uid, pid, user; or uid "unknown" and why); uid "network" for a
   * join (the target names the host).
   */
  actor: AdminPeer | { uid: 'network' }
  command: AuditCommand
  /** What it acted on: an endpoint, a snapshot, the store. */
  target: string
  outcome: 'ok' | 'failed'
  /** The error code of a failed command, or a short summary of a successful one. */
  detail?: string
}

/** Entries one `audit` call returns at most (the newest); the file itself is not cut. */
export const AUDIT_MAX_ENTRIES = 10_000
/** Largest file read back (the newest part is read). */
const MAX_READ_BYTES = 16 * 1024 * 1024

export class AuditLog {
  constructor (private readonly file: string) {}

  /** Appends one entry and fsyncs it; throws AUDIT_LOG_FAILED if it cannot. */
  append (entry: AuditEntry): void {
    const line = JSON.stringify(entry) + '\n'
    let fd: number | undefined
    try {
      fd = openSync(this.file, 'a', 0o600)
      writeSync(fd, line)
      fsyncSync(fd)
    } catch (err) {
      throw new HoldfastError('AUDIT_LOG_FAILED', `cannot append to the audit log ${this.file}: ${(err as Error).message}`, {}, { cause: err })
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
  }

  /** Entries at or after `since` (ms), oldest first; a torn last line (a crash mid-append) is skipped. */
  read (since = 0): AuditEntry[] {
    let text: string
    try {
      const buf = readFileSync(this.file)
      text = buf.subarray(Math.max(0, buf.byteLength - MAX_READ_BYTES)).toString('utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new HoldfastError('AUDIT_LOG_FAILED', `cannot read the audit log ${this.file}: ${(err as Error).message}`, {}, { cause: err })
    }
    const out: AuditEntry[] = []
    for (const line of text.split('\n')) {
      if (line === '') continue
      let e: unknown
      try { e = JSON.parse(line) } catch { continue }
      if (typeof e !== 'object' || e === null || typeof (e as AuditEntry).time !== 'number') continue
      if ((e as AuditEntry).time >= since) out.push(e as AuditEntry)
    }
    return out.slice(-AUDIT_MAX_ENTRIES)
  }
}

/**
 * Wraps an admin handler so that each call is recorded, success or failure, once it ends.
 * `target` names what the request acts on.
 */
export function audited<Req, Reply, Ctx extends { peer: () => Promise<AdminPeer> }> (log: AuditLog, now: () => number, command: AuditCommand, target: (req: Req) => string, handler: (req: Req, ctx: Ctx) => Promise<Reply>, skip?: (req: Req) => boolean): (req: Req, ctx: Ctx) => Promise<Reply> {
  return async (req, ctx) => {
    if (skip?.(req) === true) return await handler(req, ctx)
    // looked up while the command runs (the peer is still connected), awaited at the end
    const actor = ctx.peer()
    let reply: Reply
    try {
      reply = await handler(req, ctx)
    } catch (err) {
      log.append({ time: now(), actor: await actor, command, target: target(req), outcome: 'failed', detail: err instanceof HoldfastError ? err.code : 'UNKNOWN' })
      throw err
    }
    log.append({ time: now(), actor: await actor, command, target: target(req), outcome: 'ok' })
    return reply
  }
}
