/**
 * Typed errors. Callers switch on `code`, never on message text. One class for the whole
 * program keeps the CLI's mapping from code to exit status in one place.
 */
export type HoldfastErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNKNOWN_KEY'
  /** An agent could not apply a central config (a folder that does not exist, a rule that names none); it kept the one it had. */
  | 'CONFIG_REFUSED'
  | 'FRAME_TOO_LARGE'
  | 'FRAME_TRUNCATED'
  | 'FRAME_MALFORMED'
  | 'UNSUPPORTED_VERSION'
  | 'STREAM_ENDED_EARLY'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'CHUNK_HASH_MISMATCH'
  | 'CHUNK_MISSING'
  /** A chunk's declared plaintext length is above the chunk maximum (refused before decompressing). */
  | 'CHUNK_TOO_LARGE'
  /** A snapshot or restore names a chunk its endpoint has not sent (docs/security.md, ownership). */
  | 'CHUNK_NOT_OWNED'
  | 'PEER_NOT_ALLOWED'
  /** An enrolment was refused: the token is unknown, expired or used up, or the host is revoked (the joiner is not told which). */
  | 'ENROL_REFUSED'
  /** Too many enrolment attempts from this peer, this address or in all: retry later (roles/manager/enrol-throttle.ts). */
  | 'ENROL_RATE_LIMITED'
  /** `token revoke` named no token the manager holds. */
  | 'TOKEN_UNKNOWN'
  /** The membership file (tokens, approved and revoked peers) could not be read or written. */
  | 'MEMBERSHIP_FAILED'
  /** A peer sent slower than the protocol's minimum sustained rate over its window: cut and backed off. */
  | 'TRANSFER_TOO_SLOW'
  /** A peer opened more streams of one protocol than its per-peer limit (over all its connections). */
  | 'TOO_MANY_STREAMS'
  /** A read holder of the store (a pull) was cut because prune waited longer than its bound. */
  | 'LOCK_PREEMPTED'
  | 'PEER_UNKNOWN'
  | 'SET_UNKNOWN'
  /** The agent refused an ack: the set is unknown or not sealed; nothing was freed. */
  | 'ACK_REFUSED'
  | 'FOLDER_UNREADABLE'
  | 'RESTORE_TARGET_NOT_EMPTY'
  | 'RESTORE_PATH_UNSAFE'
  /** A wire entry's folder or path is absolute, has '..', '.', an empty component or a NUL, or the folder is not one component: refused at decode. */
  | 'ENTRY_PATH_UNSAFE'
  /** A restore target directory belongs to another user (docs/security.md, hostile content). */
  | 'RESTORE_TARGET_NOT_OWNED'
  /** The admin socket's directory is not a 0700 directory of ours, or the path is not a socket we may replace. */
  | 'ADMIN_SOCKET_UNSAFE'
  /** Another live daemon answers on the admin socket's path: it is never unlinked under it. */
  | 'ADMIN_SOCKET_IN_USE'
  | 'SNAPSHOT_UNKNOWN'
  | 'PATH_NOT_FOUND'
  | 'ADMIN_UNREACHABLE'
  | 'ADMIN_BAD_REQUEST'
  | 'REMOTE_ERROR'
  | 'STORE_CORRUPT'
  | 'NODE_TOO_OLD'
  | 'DATA_DIR_LOCKED'
  // per-path problems on the endpoint (reported in `holdfast status`, never thrown across a role)
  | 'SPOOL_TOO_SMALL'
  | 'FILE_TORN'
  | 'FILE_CHANGED_TYPE'
  | 'SET_RESTAGED'
  // internal states that mean a bug or a tampered store, named so a log line says which
  | 'NODE_NOT_LISTENING'
  | 'PACK_TRUNCATED'
  | 'PACK_BUSY'
  | 'STORE_INVARIANT'
  | 'WORKER_FAILED'
  /** A staging set's row cannot be held compactly (a field out of range): a bug, named so the log says which. */
  | 'SET_ROW_INVALID'
  /** The store's file system is out of space (ENOSPC) or quota (EDQUOT); nothing was committed. */
  | 'STORE_FULL'
  /** The restore would not fit in the free space of its target's file system; nothing was written. */
  | 'RESTORE_NO_SPACE'
  /** The metrics endpoint (manager.metrics.listen) could not listen: the address is taken or not ours. */
  | 'METRICS_LISTEN_FAILED'
  /** The audit log could not be written or read. */
  | 'AUDIT_LOG_FAILED'
  /** A node refused a deploy offer (busy, not a role it takes, settings it cannot apply); nothing changed on it. */
  | 'DEPLOY_REFUSED'
  /** A deploy or upgrade did not complete: the host did not answer, failed to install, or did not come back healthy. */
  | 'DEPLOY_FAILED'
  // packages and upgrades (src/deploy, docs/architecture.md "Packages and upgrades")
  /** A package's manifest signature does not verify, or its signer is not a pinned manager. */
  | 'PACKAGE_SIGNATURE_INVALID'
  /** A package's manifest or tarball is malformed (bad field, unsafe version name, bad gzip or tar). */
  | 'PACKAGE_INVALID'
  /** A package is larger than the receiver's cap or than its signed size. */
  | 'PACKAGE_TOO_LARGE'
  /** A package ended before its signed size. */
  | 'PACKAGE_TRUNCATED'
  /** A package's SHA-256 is not the one its signed manifest names. */
  | 'PACKAGE_HASH_MISMATCH'
  /** A tar entry would land outside its version directory, or is a link, device or fifo we do not unpack. */
  | 'PACKAGE_PATH_UNSAFE'
  /** A switch or rollback could not be made (no such version, no current link, nothing to roll back to). */
  | 'UPGRADE_FAILED'

/** An operating system's error code (ENOENT, EACCES, ENOSPC…), kept as the system gave it. */
export type ErrnoCode = `E${string}`

/** What a per-path problem is reported with: one of ours, or the system's errno. */
export type ProblemCode = HoldfastErrorCode | ErrnoCode

/** The errno of a file-system error, or EIO when it carries none we can trust. */
export function errnoOf (err: unknown): ErrnoCode {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code as ErrnoCode : 'EIO'
}

export class HoldfastError extends Error {
  readonly code: HoldfastErrorCode
  readonly details: Record<string, unknown>

  constructor (code: HoldfastErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'HoldfastError'
    this.code = code
    this.details = details
  }
}

export function isHoldfastError (err: unknown, code?: HoldfastErrorCode): err is HoldfastError {
  return err instanceof HoldfastError && (code === undefined || err.code === code)
}

/** A message for a log line or a CLI line from anything thrown. */
export function describeError (err: unknown): string {
  if (err instanceof HoldfastError) return `${err.code}: ${err.message}`
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code
    return typeof code === 'string' ? `${code}: ${err.message}` : `${err.name}: ${err.message}`
  }
  return String(err)
}

export function errorCode (err: unknown): string {
  if (err instanceof HoldfastError) return err.code
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code
    if (typeof code === 'string') return code
    return err.name
  }
  return 'UNKNOWN'
}

/**
 * The CLI's exit status for an error code: 2 a bad command, request or config, 3 no daemon to
 * talk to, 4 the data directory is another daemon's, 1 anything else. The one place the
 * mapping lives.
 */
export function exitStatusFor (code: string): number {
  switch (code) {
    case 'CONFIG_INVALID': case 'CONFIG_UNKNOWN_KEY': case 'ADMIN_BAD_REQUEST': return 2
    case 'ADMIN_UNREACHABLE': return 3
    case 'DATA_DIR_LOCKED': return 4
    default: return 1
  }
}
