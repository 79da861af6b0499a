/**
 * Small helpers shared by the unit tests (not a test file itself).
 */
import { strict as assert } from 'node:assert'
import { createCipheriv, createHash } from 'node:crypto'
import { HoldfastError, type HoldfastErrorCode } from '../../src/util/errors.js'

/** A validator for assert.throws / assert.rejects: a HoldfastError with exactly this code. */
export function holdfastCode (code: HoldfastErrorCode, messageIncludes?: string): (err: unknown) => boolean {
  return (err: unknown): boolean => {
    assert.ok(err instanceof HoldfastError, `expected a HoldfastError, got ${String(err)}`)
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`)
    if (messageIncludes !== undefined) {
      assert.ok(err.message.includes(messageIncludes), `expected message to include '${messageIncludes}', got '${err.message}'`)
    }
    return true
  }
}

/** Deterministic pseudo-random bytes, fast enough for tens of MiB (AES-256-CTR keystream). */
export function prngBytes (seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest()
  const iv = createHash('sha256').update('iv:' + seed).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-256-ctr', key, iv)
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()])
}

export function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** A tiny deterministic PRNG for choosing split points etc. */
export function makeRng (seed: number): (maxExclusive: number) => number {
  let x = (seed >>> 0) || 1
  return (maxExclusive: number): number => {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    return x % maxExclusive
  }
}
