/**
 * Wire helpers for the protocol fuzz suites (not a test file itself): frames out of and into
 * bytes, and the check that a service answered hostile input with a typed error.
 */
import { strict as assert } from 'node:assert'
import { encodeFrame, FRAME_HEADER_BYTES } from '../../src/protocols/framing.js'

export function framed (payloads: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(payloads.flatMap(p => encodeFrame(p))))
}

export function json (value: unknown): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify(value), 'utf8'))
}

/** Splits what a service sent into its frames (the service's own output is well formed). */
export function framesOf (bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  while (at + FRAME_HEADER_BYTES <= bytes.byteLength) {
    const length = view.getUint32(at, false)
    out.push(bytes.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length))
    at += FRAME_HEADER_BYTES + length
  }
  assert.equal(at, bytes.byteLength, 'the service sent a torn frame')
  return out
}

/**
 * The error code in a service's error frame, if its last frame is one. `prefix` is the byte
 * before the JSON (fetch's 0xFF). A non-HoldfastError thrown inside a handler reaches the
 * wire as INTERNAL, so a fuzz input that makes one fails here.
 */
export function assertTypedError (output: Uint8Array, prefix?: number): void {
  const frames = framesOf(output)
  const last = frames[frames.length - 1]
  if (last === undefined) return
  let body = last
  if (prefix !== undefined) {
    if (last[0] !== prefix) return
    body = last.subarray(1)
  }
  let value: unknown
  try { value = JSON.parse(Buffer.from(body).toString('utf8')) } catch { return }
  const error = (value as { error?: { code?: unknown, message?: unknown } } | null)?.error
  if (error === undefined) return
  assert.notEqual(error.code, 'INTERNAL', `a handler threw an untyped error: ${String(error.message)}`)
}
