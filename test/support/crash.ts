/**
 * Support for the kill -9 crash rounds (test/e2e/crash-rounds.test.ts): a seeded PRNG so a
 * failing round can be replayed, a model of a protected folder that the rounds mutate (new,
 * modified, deleted, renamed files, directories and symlinks), and a description of a tree
 * (path → type, mode, mtime, size, SHA-256, link target) to compare a restore with a tree as
 * it was, without keeping a copy of it; and the schedule of kills at named steps.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync, appendFileSync } from 'node:fs'

const MiB = 1024 * 1024

/** The seed of a crash suite: HOLDFAST_CRASH_SEED (decimal or 0x hex) when set, random otherwise. */
export function crashSeed (): number {
  const env = process.env.HOLDFAST_CRASH_SEED
  if (env !== undefined && env !== '') {
    const n = Number(env)
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`HOLDFAST_CRASH_SEED must be an integer in [0, 2^32): '${env}'`)
    return n
  }
  return randomBytes(4).readUInt32BE(0)
}

/** How many rounds each crash suite runs: HOLDFAST_CRASH_ROUNDS, default 20. */
export function crashRounds (): number {
  const env = process.env.HOLDFAST_CRASH_ROUNDS
  if (env === undefined || env === '') return 20
  const n = Number(env)
  if (!Number.isInteger(n) || n < 1) throw new Error(`HOLDFAST_CRASH_ROUNDS must be a positive integer: '${env}'`)
  return n
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export class Prng {
  private state: number

  constructor (readonly seed: number) { this.state = seed >>> 0 }

  /** Uniform in [0, 1). */
  next (): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Uniform integer in [lo, hi]. */
  int (lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)) }

  uniform (lo: number, hi: number): number { return lo + this.next() * (hi - lo) }

  chance (p: number): boolean { return this.next() < p }

  pick<T> (items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[Math.floor(this.next() * items.length)]
  }

  /** Incompressible bytes, determined by the generator's state (AES-128-CTR keystream: fast). */
  bytes (length: number): Buffer {
    const key = Buffer.alloc(16)
    const iv = Buffer.alloc(16)
    for (let i = 0; i < 4; i++) { key.writeUInt32BE(this.int(0, 0xffffffff), i * 4); iv.writeUInt32BE(this.int(0, 0xffffffff), i * 4) }
    const cipher = createCipheriv('aes-128-ctr', key, iv)
    return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()])
  }
}

export function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

// ---------------------------------------------------------------------------------------------
// Tree descriptions

export interface EntryDescription {
  type: 'file' | 'dir' | 'symlink' | 'other'
  mode: number
  mtimeNs: bigint
  size: number
  sha256?: string
  /** Symlink target, latin1 of the raw bytes. */
  target?: string
}

/** Path (latin1 of the raw bytes, relative to the root) → what is there. The root itself is not described. */
export type TreeDescription = Map<string, EntryDescription>

export function describeTree (root: string): TreeDescription {
  const out: TreeDescription = new Map()
  const rootBuf = Buffer.from(root)
  const walk = (rel: Buffer): void => {
    const dir = rel.length === 0 ? rootBuf : Buffer.concat([rootBuf, Buffer.from('/'), rel])
    for (const name of readdirSync(dir, { encoding: 'buffer' })) {
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name])
      const abs = Buffer.concat([rootBuf, Buffer.from('/'), childRel])
      const st = lstatSync(abs, { bigint: true })
      const key = childRel.toString('latin1')
      const mode = Number(st.mode & 0o7777n)
      if (st.isSymbolicLink()) {
        out.set(key, { type: 'symlink', mode, mtimeNs: st.mtimeNs, size: 0, target: readlinkSync(abs, { encoding: 'buffer' }).toString('latin1') })
      } else if (st.isDirectory()) {
        out.set(key, { type: 'dir', mode, mtimeNs: st.mtimeNs, size: 0 })
        walk(childRel)
      } else if (st.isFile()) {
        const data = readFileSync(abs)
        out.set(key, { type: 'file', mode, mtimeNs: st.mtimeNs, size: data.byteLength, sha256: sha256(data) })
      } else {
        out.set(key, { type: 'other', mode, mtimeNs: st.mtimeNs, size: 0 })
      }
    }
  }
  walk(Buffer.alloc(0))
  return out
}

export function showPath (key: string): string {
  return Buffer.from(key, 'latin1').toString()
}

/**
 * Every difference between an expected and an actual tree: presence, type, contents, size,
 * permission bits, link target, and mtime within 1 µs (what Node's utimes can set); symlink
 * mtimes are not compared (restore does not set them portably).
 */
export function diffDescriptions (expected: TreeDescription, actual: TreeDescription, options: { mtimes?: boolean } = {}): string[] {
  const diffs: string[] = []
  for (const [key, e] of expected) {
    const a = actual.get(key)
    const p = showPath(key)
    if (a === undefined) { diffs.push(`${p}: missing`); continue }
    if (a.type !== e.type) { diffs.push(`${p}: type ${a.type}, expected ${e.type}`); continue }
    if (e.type === 'symlink') {
      if (a.target !== e.target) diffs.push(`${p}: link target ${String(a.target)}, expected ${String(e.target)}`)
      continue
    }
    if (a.mode !== e.mode) diffs.push(`${p}: mode ${a.mode.toString(8)}, expected ${e.mode.toString(8)}`)
    if (e.type === 'file' && (a.size !== e.size || a.sha256 !== e.sha256)) diffs.push(`${p}: contents differ (size ${a.size}, expected ${e.size})`)
    if (options.mtimes !== false) {
      const skew = a.mtimeNs > e.mtimeNs ? a.mtimeNs - e.mtimeNs : e.mtimeNs - a.mtimeNs
      if (skew >= 1000n) diffs.push(`${p}: mtime ${a.mtimeNs}, expected ${e.mtimeNs}`)
    }
  }
  for (const key of actual.keys()) if (!expected.has(key)) diffs.push(`${showPath(key)}: unexpected`)
  return diffs
}

// ---------------------------------------------------------------------------------------------
// A protected folder and a model of what it should hold

export type ModelEntry =
  | { type: 'file', size: number, sha256: string, mode: number }
  | { type: 'dir', mode: number }
  | { type: 'symlink', target: string } // latin1 of the raw target bytes

export interface MutationPlan {
  /** Range of small files (0 B to 96 KiB) to create. */
  smallFiles: [number, number]
  /** Range of large files to create, and of their sizes. */
  largeFiles: [number, number]
  largeBytes: [number, number]
  /** Range of files to modify, delete and rename (of those that exist). */
  modify: [number, number]
  delete: [number, number]
  rename: [number, number]
  /** Before creating, delete the largest files until the folder plus what is planned fits. */
  maxTotalBytes: number
}

export interface MutationSummary {
  created: number
  modified: number
  deleted: number
  renamed: number
  other: number
  bytesWritten: number
  /** Regular files whose contents or path are new this round (each has a files row on the agent). */
  changedFiles: number
}

/**
 * A protected folder the rounds mutate, with a model of its expected contents (keys are the
 * latin1 form of raw relative paths, so names that are not UTF-8 work too). Every name is
 * chosen from the seeded generator, so a seed replays the same mutations.
 */
export class FolderModel {
  readonly entries = new Map<string, ModelEntry>()
  private serial = 0

  constructor (readonly root: string, private readonly rng: Prng) {
    mkdirSync(root, { recursive: true })
  }

  abs (key: string): Buffer {
    return Buffer.concat([Buffer.from(this.root), Buffer.from('/'), Buffer.from(key, 'latin1')])
  }

  totalBytes (): number {
    let n = 0
    for (const e of this.entries.values()) if (e.type === 'file') n += e.size
    return n
  }

  files (): string[] { return [...this.entries].filter(([, e]) => e.type === 'file').map(([k]) => k) }

  dirs (): string[] { return ['', ...[...this.entries].filter(([, e]) => e.type === 'dir').map(([k]) => k)] }

  /** The entries every kind of round-trip needs: nested and empty directories, modes, symlinks (dangling too), a name that is not UTF-8, an empty file. */
  seedSpecials (): void {
    this.mkdir('docs', 0o755)
    this.mkdir('docs/deep', 0o750)
    this.mkdir('docs/deep/er', 0o755)
    this.mkdir('empty-dir', 0o700)
    this.writeFile('docs/notes.md', Buffer.from('# notes\n' + 'a line of text\n'.repeat(300)), 0o644)
    this.writeFile('docs/deep/er/leaf.bin', this.rng.bytes(5000), 0o600)
    this.writeFile('empty.txt', Buffer.alloc(0), 0o644)
    this.writeFile('run.sh', Buffer.from('#!/bin/sh\necho hi\n'), 0o750)
    this.writeFile(Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0x2d, 0xe9, 0x2e, 0x74, 0x78, 0x74]).toString('latin1'), Buffer.from('latin-1 name\n'), 0o644)
    this.symlink('link-to-notes', 'docs/notes.md')
    this.symlink('dangling', '../../nowhere/at/all')
  }

  mutate (round: number, plan: MutationPlan): MutationSummary {
    const s: MutationSummary = { created: 0, modified: 0, deleted: 0, renamed: 0, other: 0, bytesWritten: 0, changedFiles: 0 }
    const rng = this.rng
    const changed = new Set<string>()
    // Plan the new files first, so room can be made for them.
    const sizes: number[] = []
    for (let i = rng.int(plan.largeFiles[0], plan.largeFiles[1]); i > 0; i--) sizes.push(rng.int(plan.largeBytes[0], plan.largeBytes[1]))
    for (let i = rng.int(plan.smallFiles[0], plan.smallFiles[1]); i > 0; i--) sizes.push(rng.chance(0.1) ? 0 : rng.int(1, 96 * 1024))
    const planned = sizes.reduce((a, b) => a + b, 0)

    // Deletions: some at random, then the largest files until what is planned fits.
    for (let i = rng.int(plan.delete[0], plan.delete[1]); i > 0; i--) {
      const files = this.files()
      if (files.length === 0) break
      this.remove(rng.pick(files))
      s.deleted++
    }
    if (rng.chance(0.15)) {
      const dirs = this.dirs().filter(d => d.startsWith('r'))
      if (dirs.length > 0) { this.remove(rng.pick(dirs)); s.deleted++ }
    }
    while (this.totalBytes() + planned > plan.maxTotalBytes) {
      const largest = this.files().sort((a, b) => this.size(b) - this.size(a))[0]
      if (largest === undefined) break
      this.remove(largest)
      s.deleted++
    }

    // Modifications of existing files: in place, appended, truncated, or rewritten.
    for (let i = rng.int(plan.modify[0], plan.modify[1]); i > 0; i--) {
      const files = this.files().filter(f => !changed.has(f))
      if (files.length === 0) break
      const key = rng.pick(files)
      s.bytesWritten += this.modify(key)
      changed.add(key)
      s.modified++
    }

    // Renames: files to another directory and/or name, sometimes a whole directory.
    for (let i = rng.int(plan.rename[0], plan.rename[1]); i > 0; i--) {
      const files = this.files()
      if (files.length === 0) break
      const from = rng.pick(files)
      const to = this.freshPath(rng.pick(this.dirs()), `mv${round}`)
      this.rename(from, to)
      changed.delete(from)
      changed.add(to)
      s.renamed++
    }
    if (rng.chance(0.2)) {
      const dirs = this.dirs().filter(d => d.startsWith('r') && !d.includes('/'))
      if (dirs.length > 0) {
        const from = rng.pick(dirs)
        const to = this.freshPath('', `r${round}-moved`)
        for (const k of this.keysUnder(from)) if (this.entries.get(k)?.type === 'file') { changed.delete(k); changed.add(to + k.slice(from.length)) }
        this.rename(from, to)
        s.renamed++
      }
    }

    // New directories, then the new files spread over the directories.
    for (let i = rng.int(0, 2); i > 0; i--) {
      const parent = rng.pick(this.dirs())
      this.mkdir(this.freshPath(parent, `r${round}-d`), rng.pick([0o755, 0o750, 0o700]))
      s.other++
    }
    for (const size of sizes) {
      const key = this.freshPath(rng.pick(this.dirs()), `r${round}-f`, rng.chance(0.1))
      this.writeFile(key, rng.bytes(size), rng.pick([0o644, 0o644, 0o600, 0o755]))
      changed.add(key)
      s.created++
      s.bytesWritten += size
    }

    // Now and then: a mode change, a new or removed symlink.
    if (rng.chance(0.3)) {
      const files = this.files()
      if (files.length > 0) {
        const key = rng.pick(files)
        const e = this.entries.get(key) as { type: 'file', size: number, sha256: string, mode: number }
        e.mode = e.mode === 0o640 ? 0o600 : 0o640
        chmodSync(this.abs(key), e.mode)
        changed.add(key)
        s.other++
      }
    }
    if (rng.chance(0.3)) {
      const links = [...this.entries].filter(([, e]) => e.type === 'symlink').map(([k]) => k)
      if (links.length > 2 && rng.chance(0.5)) {
        this.remove(rng.pick(links))
      } else {
        const target = rng.chance(0.5) ? rng.pick(this.files().concat(['missing'])) : `../outside-${round}`
        this.symlink(this.freshPath(rng.pick(this.dirs()), `r${round}-l`), target)
      }
      s.other++
    }
    s.changedFiles = [...changed].filter(k => this.entries.get(k)?.type === 'file').length
    return s
  }

  /** Differences between the folder on disk and the model (contents, types, modes, targets; not mtimes). */
  check (): string[] {
    const actual = describeTree(this.root)
    const expected: TreeDescription = new Map()
    for (const [key, e] of this.entries) {
      if (e.type === 'file') expected.set(key, { type: 'file', mode: e.mode, mtimeNs: 0n, size: e.size, sha256: e.sha256 })
      else if (e.type === 'dir') expected.set(key, { type: 'dir', mode: e.mode, mtimeNs: 0n, size: 0 })
      else expected.set(key, { type: 'symlink', mode: 0, mtimeNs: 0n, size: 0, target: e.target })
    }
    return diffDescriptions(expected, actual, { mtimes: false })
  }

  private size (key: string): number {
    const e = this.entries.get(key)
    return e?.type === 'file' ? e.size : 0
  }

  private freshPath (dir: string, prefix: string, odd = false): string {
    for (;;) {
      // Now and then a name with a space or bytes that are not ASCII (UTF-8 é, or a lone latin-1 é).
      const tag = odd ? this.rng.pick([' with space', '-\u00c3\u00a9t\u00c3\u00a9', '-\u00e9']) : ''
      const name = `${prefix}${this.serial++}${tag}`
      const key = dir === '' ? name : `${dir}/${name}`
      if (!this.entries.has(key)) return key
    }
  }

  private keysUnder (dir: string): string[] {
    return [...this.entries.keys()].filter(k => k === dir || k.startsWith(dir + '/'))
  }

  private mkdir (key: string, mode: number): void {
    mkdirSync(this.abs(key))
    chmodSync(this.abs(key), mode)
    this.entries.set(key, { type: 'dir', mode })
  }

  private writeFile (key: string, data: Buffer, mode: number): void {
    writeFileSync(this.abs(key), data)
    chmodSync(this.abs(key), mode)
    this.entries.set(key, { type: 'file', size: data.byteLength, sha256: sha256(data), mode })
  }

  /** `target` is the latin1 form of the raw target bytes, like the keys. */
  private symlink (key: string, target: string): void {
    symlinkSync(Buffer.from(target, 'latin1'), this.abs(key))
    this.entries.set(key, { type: 'symlink', target })
  }

  private remove (key: string): void {
    const e = this.entries.get(key)
    if (e === undefined) return
    if (e.type === 'dir') rmSync(this.abs(key), { recursive: true })
    else unlinkSync(this.abs(key))
    for (const k of this.keysUnder(key)) this.entries.delete(k)
  }

  private rename (from: string, to: string): void {
    if (existsSync(this.abs(to))) throw new Error(`model: rename target ${showPath(to)} exists`)
    renameSync(this.abs(from), this.abs(to))
    for (const k of this.keysUnder(from)) {
      const e = this.entries.get(k) as ModelEntry
      this.entries.delete(k)
      this.entries.set(to + k.slice(from.length), e)
    }
  }

  /** Changes a file's contents; returns the bytes written. */
  private modify (key: string): number {
    const e = this.entries.get(key) as { type: 'file', size: number, sha256: string, mode: number }
    const abs = this.abs(key)
    let data: Buffer = readFileSync(abs)
    const rng = this.rng
    const how = data.byteLength === 0 ? 'append' : rng.pick(['patch', 'patch', 'append', 'truncate', 'rewrite'] as const)
    let written = 0
    if (how === 'patch') {
      // In place, same size: for a large file only the chunks around the patch change.
      const len = Math.max(1, Math.min(data.byteLength, rng.int(1, data.byteLength > MiB ? 512 * 1024 : 16 * 1024)))
      const at = rng.int(0, data.byteLength - len)
      const patch = rng.bytes(len)
      const fd = openSync(abs, 'r+')
      try { writeSync(fd, patch, 0, len, at) } finally { closeSync(fd) }
      patch.copy(data, at)
      written = len
    } else if (how === 'append') {
      const more = rng.bytes(rng.int(1, 64 * 1024))
      appendFileSync(abs, more)
      data = Buffer.concat([data, more])
      written = more.byteLength
    } else if (how === 'truncate') {
      const size = rng.int(0, data.byteLength - 1)
      truncateSync(abs, size)
      data = data.subarray(0, size)
    } else {
      data = rng.bytes(rng.int(0, Math.max(1, Math.min(2 * MiB, data.byteLength * 2))))
      writeFileSync(abs, data)
      written = data.byteLength
    }
    e.size = data.byteLength
    e.sha256 = sha256(data)
    return written
  }
}

/** Spool segment files in a directory (none once everything is acknowledged). */
export function segmentFiles (spoolDir: string): string[] {
  try { return readdirSync(spoolDir).filter(n => n.endsWith('.seg')) } catch { return [] }
}

/** Total bytes of the pack files in a manager's pack directory. */
export function packBytes (packDir: string): number {
  try {
    return readdirSync(packDir).filter(n => n.endsWith('.pack')).reduce((n, f) => n + lstatSync(`${packDir}/${f}`).size, 0)
  } catch { return 0 }
}

// ---------------------------------------------------------------------------------------------
// Kills at named steps

/**
 * Which rounds kill at a named phase on purpose: each phase gets one distinct round of
 * 1..rounds-1 (round 0 calibrates), chosen from the generator, so a random kill time is never
 * the only way a phase is reached. Needs rounds > phases.length.
 */
export function plannedKills<P extends string> (rng: Prng, rounds: number, phases: readonly P[]): Map<number, P> {
  if (rounds < phases.length + 1) throw new Error(`${rounds} rounds cannot hold a calibration round and a planned kill at each of ${phases.join(', ')}`)
  const free = Array.from({ length: rounds - 1 }, (_, i) => i + 1)
  const out = new Map<number, P>()
  for (const phase of phases) {
    const round = free.splice(rng.int(0, free.length - 1), 1)[0]
    out.set(round, phase)
  }
  return out
}

/** Phases of `named` that `hits` never counted (a run must hit each at least once). */
export function phasesMissed (hits: ReadonlyMap<string, number>, named: readonly string[]): string[] {
  return named.filter(p => (hits.get(p) ?? 0) === 0)
}

/**
 * Waits until a daemon's log shows it paused at the test-only kill point it was started with
 * (HOLDFAST_TEST_PAUSE_AT, src/util/test-pause.ts): the line names the step and the daemon's
 * pid, so a pause of an earlier run of the daemon in the same log does not count. Gives up
 * (false) after `ms`, or as soon as `stop()` says the operation ended without pausing.
 */
export async function waitForPause (logFile: string, mark: string, step: string, pid: number, ms: number, stop: () => boolean): Promise<boolean> {
  const line = `${mark} ${step} pid=${pid}\n`
  const deadline = Date.now() + ms
  for (;;) {
    let log = ''
    try { log = readFileSync(logFile, 'utf8') } catch { /* not written yet */ }
    if (log.includes(line)) return true
    if (stop() || Date.now() > deadline) return false
    await delay(10)
  }
}
