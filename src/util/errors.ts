/**
 * Typed errors. Callers switch on `code`, never on message text. One class for the whole
 * program keeps the CLI's mapping from code to exit status in one place.
 */
export type HoldfastErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNKNOWN_KEY'
  | 'FRAME_TOO_LARGE'
  | 'FRAME_TRUNCATED'
  | 'FRAME_MALFORMED'
  | 'UNSUPPORTED_VERSION'
  | 'STREAM_ENDED_EARLY'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'CHUNK_HASH_MISMATCH'
  | 'CHUNK_MISSING'
  | 'PEER_NOT_ALLOWED'
  | 'PEER_UNKNOWN'
  | 'SET_UNKNOWN'
  | 'FOLDER_UNREADABLE'
  | 'RESTORE_TARGET_NOT_EMPTY'
  | 'RESTORE_PATH_UNSAFE'
  | 'SNAPSHOT_UNKNOWN'
  | 'PATH_NOT_FOUND'
  | 'ADMIN_UNREACHABLE'
  | 'ADMIN_BAD_REQUEST'
  | 'REMOTE_ERROR'
  | 'STORE_CORRUPT'
  | 'NODE_TOO_OLD'
  /** The store's file system is out of space (ENOSPC) or quota (EDQUOT); nothing was committed. */
  | 'STORE_FULL'
  /** The restore would not fit in the free space of its target's file system; nothing was written. */
  | 'RESTORE_NO_SPACE'

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
