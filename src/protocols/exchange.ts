/**
 * What every Holdfast protocol shares: a deadline on each exchange, JSON control messages with
 * a size limit and a version check, typed error frames, and the narrow part of a libp2p node
 * that a protocol needs (so protocols never see the whole node).
 */
import type { Connection, Stream, StreamHandler, StreamHandlerOptions, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HoldfastError } from '../util/errors.js'
import { FrameReader, writeFrame } from './framing.js'

export const PROTOCOL_PREFIX = '/holdfast'
export const WIRE_VERSION = 1

export function protocolId (name: string, version = WIRE_VERSION): string {
  return `${PROTOCOL_PREFIX}/${name}/${version}`
}

/** The part of a libp2p node a protocol uses. */
export interface ProtocolHost {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId | Multiaddr | Multiaddr[], protocol: string, options?: { signal?: AbortSignal }) => Promise<Stream>
}

/** Decides whether a remote peer may use a protocol at all. */
export type PeerGate = (remotePeer: string) => boolean

export function deadline (ms: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms)
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout])
}

/**
 * Runs one exchange on a stream: when the signal fires the stream is aborted (which also ends
 * any pending read), and on any failure the stream is aborted with the error, never left
 * half-open.
 */
export async function runExchange<T> (stream: Stream, signal: AbortSignal, what: string, fn: () => Promise<T>): Promise<T> {
  const onAbort = (): void => {
    const reason: unknown = signal.reason
    const timedOut = reason instanceof DOMException && reason.name === 'TimeoutError'
    stream.abort(new HoldfastError(timedOut ? 'TIMEOUT' : 'ABORTED', `${what}: ${timedOut ? 'deadline passed' : 'aborted'}`))
  }
  if (signal.aborted) onAbort()
  signal.addEventListener('abort', onAbort, { once: true })
  // Aborting the stream does not always end a pending read (a stream already reset keeps
  // its iterator waiting), so the deadline also races the work itself.
  let rejectOnAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    rejectOnAbort = () => { reject(signal.reason) }
    signal.addEventListener('abort', rejectOnAbort, { once: true })
  })
  aborted.catch(() => {})
  try {
    return await Promise.race([fn(), aborted])
  } catch (err) {
    if (signal.aborted) {
      const reason: unknown = signal.reason
      const timedOut = reason instanceof DOMException && reason.name === 'TimeoutError'
      const wrapped = new HoldfastError(timedOut ? 'TIMEOUT' : 'ABORTED', `${what}: ${timedOut ? 'deadline passed' : 'aborted'}`, {}, { cause: err })
      stream.abort(wrapped)
      throw wrapped
    }
    stream.abort(err instanceof Error ? err : new HoldfastError('ABORTED', String(err)))
    throw err
  } finally {
    signal.removeEventListener('abort', onAbort)
    if (rejectOnAbort !== undefined) signal.removeEventListener('abort', rejectOnAbort)
  }
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true })

export function encodeJson (message: unknown, maxLength: number): Uint8Array {
  const bytes = textEncoder.encode(JSON.stringify(message))
  if (bytes.byteLength > maxLength) {
    throw new HoldfastError('FRAME_TOO_LARGE', `message of ${bytes.byteLength} bytes exceeds the limit of ${maxLength}`)
  }
  return bytes
}

/** Parses a JSON control message and checks its version; `validate` checks the shape. */
export function decodeJson<T> (payload: Uint8Array, validate: (value: Record<string, unknown>) => T): T {
  let value: unknown
  try {
    value = JSON.parse(textDecoder.decode(payload))
  } catch (err) {
    throw new HoldfastError('FRAME_MALFORMED', 'message is not valid UTF-8 JSON', {}, { cause: err })
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HoldfastError('FRAME_MALFORMED', 'message is not a JSON object')
  }
  const record = value as Record<string, unknown>
  if (record.v !== WIRE_VERSION) {
    throw new HoldfastError('UNSUPPORTED_VERSION', `message version ${wireText(record.v, 32)} is not supported (this node speaks ${WIRE_VERSION})`)
  }
  const error = record.error
  if (typeof error === 'object' && error !== null) {
    const e = error as Record<string, unknown>
    const remoteCode = wireText(e.code, 64)
    throw new HoldfastError('REMOTE_ERROR', `remote: ${remoteCode}: ${wireText(e.message, 4096)}`, { remoteCode })
  }
  return validate(record)
}

/**
 * A remote's value as text for a message, cut to `max` characters. Never String() on it:
 * JSON like {"toString":1} makes String() throw a TypeError instead of our error.
 */
export function wireText (value: unknown, max: number): string {
  const text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined ? String(value) : `(${Array.isArray(value) ? 'array' : 'object'})`
  return text.length > max ? text.slice(0, max) + '…' : text
}

export function errorMessage (err: unknown): { v: number, error: { code: string, message: string } } {
  const code = err instanceof HoldfastError ? err.code : 'INTERNAL'
  const message = err instanceof Error ? err.message : String(err)
  return { v: WIRE_VERSION, error: { code, message } }
}

export async function sendJson (stream: Stream, message: unknown, maxLength: number, signal?: AbortSignal): Promise<void> {
  await writeFrame(stream, encodeJson(message, maxLength), signal)
}

export async function readJson<T> (reader: FrameReader, maxLength: number, what: string, validate: (value: Record<string, unknown>) => T): Promise<T> {
  return decodeJson(await reader.expect(maxLength, what), validate)
}

// Small shape checks: a malformed message names the field that is wrong.
export function field<T> (ok: boolean, name: string, value: T): T {
  if (!ok) throw new HoldfastError('FRAME_MALFORMED', `field '${name}' is missing or has the wrong type`)
  return value
}
export function int (record: Record<string, unknown>, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = record[name]
  return field(typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max, name, v as number)
}
export function str (record: Record<string, unknown>, name: string, maxLength = 4096): string {
  const v = record[name]
  return field(typeof v === 'string' && v.length <= maxLength, name, v as string)
}
export function bool (record: Record<string, unknown>, name: string): boolean {
  const v = record[name]
  return field(typeof v === 'boolean', name, v as boolean)
}
export function arr (record: Record<string, unknown>, name: string, maxItems: number): unknown[] {
  const v = record[name]
  return field(Array.isArray(v) && v.length <= maxItems, name, v as unknown[])
}

/**
 * One idle timer pushed back on every frame, raced with an exchange's deadline (a new signal
 * per frame would cost more than the frame).
 */
export class IdleDeadline {
  private readonly controller = new AbortController()
  private readonly timer: NodeJS.Timeout
  readonly signal: AbortSignal
  constructor (ms: number, outer: AbortSignal) {
    this.timer = setTimeout(() => { this.controller.abort(new DOMException(`no frame for ${ms} ms`, 'TimeoutError')) }, ms)
    this.signal = AbortSignal.any([outer, this.controller.signal])
  }

  touch (): void { this.timer.refresh() }
  clear (): void { clearTimeout(this.timer) }
}

export type { Connection, Stream }
