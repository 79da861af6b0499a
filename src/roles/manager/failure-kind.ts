/**
 * Tells a pull that failed because the way to the peer broke (link cut, connection reset,
 * no frame before a deadline) from one whose conversation went wrong (bad data, a store
 * fault, a refusal). The first is retried soon, as a peer that was not there (a cable back in
 * or a laptop lid opened must not wait a whole pull interval); the second backs off.
 */
import { isHoldfastError, type HoldfastErrorCode } from '../../util/errors.js'
import type { FailureKind } from './peer-table.js'

/** Our codes that mean the stream or connection died under the exchange. */
const TRANSPORT_CODES = new Set<HoldfastErrorCode>(['TIMEOUT', 'STREAM_ENDED_EARLY', 'FRAME_TRUNCATED'])
/** libp2p, DOMException and socket errors that mean the same (by name or code, never by message). */
const TRANSPORT_NAMES = new Set([
  'TimeoutError', 'AbortError', 'StreamResetError', 'StreamAbortedError', 'StreamStateError', 'StreamClosedError',
  'ConnectionClosedError', 'ConnectionClosingError', 'MuxerClosedError', 'DialError', 'NoValidAddressesError', 'UnexpectedEOFError'
])
const TRANSPORT_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN'])

/** How deep a chain of `cause`s is followed (a cycle must not loop). */
const MAX_CAUSES = 8

export function isTransportFailure (err: unknown): boolean {
  let e: unknown = err
  for (let i = 0; i < MAX_CAUSES && e !== undefined && e !== null; i++) {
    if (isHoldfastError(e)) {
      if (TRANSPORT_CODES.has(e.code)) return true
    } else if (e instanceof Error) {
      const code = (e as Error & { code?: unknown }).code
      if (TRANSPORT_NAMES.has(e.name) || (typeof code === 'string' && (TRANSPORT_ERRNO.has(code) || TRANSPORT_NAMES.has(code)))) return true
    }
    e = e instanceof Error ? e.cause : undefined
  }
  return false
}

/**
 * `answered`: the peer sent its manifest in this pull. `stopping`: we aborted it ourselves.
 */
export function classifyPullFailure (err: unknown, answered: boolean, stopping: boolean): FailureKind {
  if (stopping) return 'error'
  if (!answered) return 'unreachable'
  return isTransportFailure(err) ? 'unreachable' : 'error'
}
