/**
 * The fuzz harness every suite in test/fuzz uses (not a test file itself). A decoder under
 * fuzz may return a value or throw a HoldfastError with a code; anything else (a TypeError, a
 * RangeError, a hang, memory that grows with the input's claims) fails the property.
 *
 * FUZZ_RUNS is the number of generated inputs for the whole fuzz layer, shared out by weight
 * (a cheap decoder gets more than one that decompresses). `npm test` runs a few thousand;
 * `npm run fuzz` (scripts/fuzz.ts) a million and prints what each property ran. FUZZ_SEED
 * replays a failure; fast-check prints the seed and path of every counterexample.
 */
import fc from 'fast-check'
import { appendFileSync } from 'node:fs'
import { HoldfastError } from '../../src/util/errors.js'

const MiB = 1024 * 1024

export const FUZZ_LIMITS = Object.freeze({
  /** Longest any one input may take (a decoder that loops on its input blows it). */
  perInputMs: 5_000,
  /**
   * Heap + array buffers above the start of a property, sampled without a GC: garbage from
   * a few hundred inputs (decompressed chunks of up to 4 MiB) may sit here until V8 collects.
   */
  peakGrowthBytes: 1024 * MiB,
  /** What may stay live (measured after a GC, when node runs with --expose-gc). */
  retainedGrowthBytes: 64 * MiB,
  sampleEvery: 32
})

function envInt (name: string, fallback: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return fallback
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, not '${v}'`)
  return n
}

/** Inputs for the whole fuzz layer: a few thousand for `npm test`. */
export const FUZZ_TOTAL = envInt('FUZZ_RUNS', 4000)
const FUZZ_SEED = process.env.FUZZ_SEED === undefined ? undefined : envInt('FUZZ_SEED', 1)

interface Registered { name: string, weight: number }
const registry: Registered[] = []

/** This property's share of FUZZ_TOTAL (every property is registered before the first runs). */
function runsFor (weight: number): number {
  const sum = registry.reduce((a, r) => a + r.weight, 0)
  return Math.max(20, Math.ceil(FUZZ_TOTAL * weight / sum))
}

/** A decoder's outcome is fine when it returned, or threw one of our typed errors. */
export function acceptOutcome (err: unknown): void {
  if (err instanceof HoldfastError && typeof err.code === 'string' && err.code.length > 0) return
  const what = err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err)
  throw new Error(`decoder threw something other than a HoldfastError: ${what}`)
}

const gc: (() => void) | undefined = typeof globalThis.gc === 'function' ? globalThis.gc : undefined

function memory (): number {
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

class Meter {
  readonly base: number
  peak = 0
  runs = 0
  private readonly started = performance.now()
  constructor () {
    gc?.()
    this.base = memory()
  }

  tick (): void {
    this.runs++
    if (this.runs % FUZZ_LIMITS.sampleEvery === 0) this.sample()
  }

  sample (): void {
    const growth = memory() - this.base
    if (growth > this.peak) this.peak = growth
    if (growth > FUZZ_LIMITS.peakGrowthBytes) throw new Error(`memory grew by ${Math.round(growth / MiB)} MiB during the run (limit ${FUZZ_LIMITS.peakGrowthBytes / MiB} MiB)`)
  }

  async finish (name: string): Promise<void> {
    const ms = performance.now() - this.started
    // array buffers are freed by a second pass after the GC that found them dead
    for (let i = 0; i < 3; i++) {
      gc?.()
      await new Promise(resolve => setImmediate(resolve))
    }
    const retained = memory() - this.base
    const report = process.env.FUZZ_REPORT
    if (report !== undefined && report !== '') {
      appendFileSync(report, JSON.stringify({ name, runs: this.runs, ms: Math.round(ms), peakMiB: +(this.peak / MiB).toFixed(1), retainedMiB: +(retained / MiB).toFixed(1) }) + '\n')
    }
    if (gc !== undefined && retained > FUZZ_LIMITS.retainedGrowthBytes) throw new Error(`${Math.round(retained / MiB)} MiB still held after the run`)
  }
}

function overTime (started: number): void {
  const ms = performance.now() - started
  if (ms > FUZZ_LIMITS.perInputMs) throw new Error(`one input took ${Math.round(ms)} ms (limit ${FUZZ_LIMITS.perInputMs} ms)`)
}

function params (runs: number): fc.Parameters<unknown> {
  return FUZZ_SEED === undefined ? { numRuns: runs } : { numRuns: runs, seed: FUZZ_SEED }
}

/**
 * A property over a synchronous decoder: `check` runs the decoder (and asserts on a value it
 * returns); a HoldfastError it throws is fine, anything else fails.
 */
export function fuzz<T> (name: string, arb: fc.Arbitrary<T>, check: (input: T) => void, weight = 1): void {
  registry.push({ name, weight })
  it(name, async function () {
    this.timeout(0)
    const meter = new Meter()
    fc.assert(fc.property(arb, input => {
      meter.tick()
      const started = performance.now()
      try { check(input) } catch (err) { acceptOutcome(err) }
      overTime(started)
    }), params(runsFor(weight)) as fc.Parameters<[T]>)
    await meter.finish(name)
  })
}

/** As fuzz(), for a decoder that reads a stream; an input that takes too long is a hang. */
export function fuzzAsync<T> (name: string, arb: fc.Arbitrary<T>, check: (input: T) => Promise<void>, weight = 1): void {
  registry.push({ name, weight })
  it(name, async function () {
    this.timeout(0)
    const meter = new Meter()
    await fc.assert(fc.asyncProperty(arb, async input => {
      meter.tick()
      const started = performance.now()
      let timer: NodeJS.Timeout | undefined
      // a watchdog, not a sleep: it fires only when the decoder hangs
      const hang = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new Error(`input still running after ${FUZZ_LIMITS.perInputMs} ms (a hang)`)) }, FUZZ_LIMITS.perInputMs)
      })
      try {
        await Promise.race([check(input).catch(acceptOutcome), hang])
      } finally {
        clearTimeout(timer)
      }
      overTime(started)
    }), params(runsFor(weight)) as fc.Parameters<[T]>)
    await meter.finish(name)
  })
}

// ---- shared arbitraries ----

/** Values that have broken decoders elsewhere: wrong types, edges of ranges, huge strings, traps for String(). */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(-1, 0, 1, 0.5, -0.0, 2 ** 31, 2 ** 32, 2 ** 32 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, '', ' ', '0', '1', '-1', '1e3', 'NaN', 'x'.repeat(70_000), '\u0000', '\ud800', '..', '/', '__proto__', true, false, null, [], {}, [null], { toString: 1 }, { toString: 1, valueOf: 1 }, { __proto__: null }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() }
)

export const hostileKey: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', 'v', 'error', 'code', 'message')
)

type Json = unknown

interface Mutation { kind: 'drop' | 'set' | 'add' | 'wrap', path: number[], key: string, value: unknown }

const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom<Mutation['kind']>('drop', 'set', 'set', 'add', 'wrap'),
  path: fc.array(fc.nat(), { maxLength: 4 }),
  key: hostileKey,
  value: hostileValue
})

function clone (v: Json): Json {
  const text = JSON.stringify(v)
  return text === undefined ? undefined : JSON.parse(text) as Json
}

/** Applies one mutation at a node reached by following `path` (indexes into keys, mod size). */
function applyMutation (root: Json, m: Mutation): Json {
  const container = (v: Json): v is Record<string, Json> | Json[] => typeof v === 'object' && v !== null
  if (!container(root)) return m.kind === 'wrap' ? [root] : clone(m.value)
  let node: Record<string, Json> | Json[] = root
  for (const step of m.path) {
    const keys = Object.keys(node)
    if (keys.length === 0) break
    const child: Json = (node as Record<string, Json>)[keys[step % keys.length]]
    if (!container(child)) break
    node = child
  }
  const keys = Object.keys(node)
  const target = keys.length === 0 ? m.key : keys[(m.path[m.path.length - 1] ?? 0) % keys.length]
  const rec = node as Record<string, Json>
  // a fresh copy: a shared constant must never be mutated (or made circular) by a later step
  const value = clone(m.value)
  if (Array.isArray(node) && (target === 'length' || m.key === 'length')) return root
  switch (m.kind) {
    case 'drop':
      // not splice: a mutation may have set 'constructor' on the array, which splice consults
      if (Array.isArray(node) && /^[0-9]+$/.test(target)) { node.copyWithin(Number(target), Number(target) + 1); node.length = Math.max(0, node.length - 1) } else Reflect.deleteProperty(rec, target)
      break
    case 'set': Object.defineProperty(rec, target, { value, enumerable: true, writable: true, configurable: true }); break
    case 'add': Object.defineProperty(rec, m.key, { value, enumerable: true, writable: true, configurable: true }); break
    case 'wrap': Object.defineProperty(rec, target, { value: [rec[target]], enumerable: true, writable: true, configurable: true }); break
  }
  return root
}

interface ByteEdit { kind: 'flip' | 'insert' | 'delete' | 'truncate', at: number, byte: number }
const byteEdit: fc.Arbitrary<ByteEdit> = fc.record({ kind: fc.constantFrom<ByteEdit['kind']>('flip', 'insert', 'delete', 'truncate'), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) })

export function editBytes (bytes: Uint8Array, edits: readonly ByteEdit[]): Uint8Array {
  let out = Buffer.from(bytes)
  for (const e of edits) {
    const at = out.length === 0 ? 0 : e.at % (out.length + 1)
    if (e.kind === 'flip' && out.length > 0) out[at % out.length] ^= (e.byte | 1)
    else if (e.kind === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([e.byte]), out.subarray(at)])
    else if (e.kind === 'delete' && out.length > 0) out = Buffer.concat([out.subarray(0, at % out.length), out.subarray((at % out.length) + 1)])
    else if (e.kind === 'truncate') out = out.subarray(0, at)
  }
  return new Uint8Array(out)
}

/**
 * Valid messages from `valid`, mutated: most inputs get a few structural mutations (a field
 * dropped, retyped, added, wrapped) and some get byte edits of the JSON text on top, so the
 * decoder sees both near-valid shapes and broken JSON.
 */
export function mutatedJson (valid: fc.Arbitrary<Json>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(valid, fc.array(mutation, { maxLength: 3 }), fc.array(byteEdit, { maxLength: 2 }), fc.nat({ max: 3 })).map(([v, ms, edits, byteMode]) => {
    let value = clone(v)
    for (const m of ms) value = applyMutation(value, m)
    const text = new Uint8Array(Buffer.from(JSON.stringify(value) ?? 'null', 'utf8'))
    return byteMode === 0 ? editBytes(text, edits) : text
  })
}

/** Same mutations, on the value (for decoders that take parsed JSON). */
export function mutatedValue (valid: fc.Arbitrary<Json>): fc.Arbitrary<unknown> {
  return fc.tuple(valid, fc.array(mutation, { maxLength: 3 })).map(([v, ms]) => {
    let value = clone(v)
    for (const m of ms) value = applyMutation(value, m)
    return value
  })
}

/** Random bytes, biased toward the short lengths where most format checks sit. */
export const randomBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ maxLength: 4096 })
)
