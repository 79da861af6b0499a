/**
 * The manager's store without the network: PackStore + Catalog (real node:sqlite) +
 * restoreSnapshot, on real files in temporary directories.
 */
import { strict as assert } from 'node:assert'
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PackStore } from '../../src/store/core/packs.js'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { restoreSnapshot, type RestoreSummary } from '../../src/store/restore.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { displayPath, toHex, type EntryType, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'

// ---------------------------------------------------------------- helpers

/** Small chunks, so ordinary test files span several chunks and packs. */
const CHUNK = 4096
const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const S_IFLNK = 0o120000

interface Spec {
  path: string | Buffer
  type: EntryType
  content?: Buffer
  /** Permission bits; the type bits are added. */
  perm?: number
  mtimeNs?: bigint
  target?: string
  folder?: string
  linkKey?: string
}

function cut (content: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < content.byteLength; i += CHUNK) out.push(content.subarray(i, i + CHUNK))
  return out
}

function entryOf (spec: Spec, defaultFolder: string): { entry: StagedEntry, plains: Buffer[] } {
  const plains = spec.type === 'file' ? cut(spec.content ?? Buffer.alloc(0)) : []
  const typeBits = spec.type === 'file' ? S_IFREG : spec.type === 'dir' ? S_IFDIR : spec.type === 'symlink' ? S_IFLNK : 0
  const entry: StagedEntry = {
    folder: spec.folder ?? defaultFolder,
    path: new Uint8Array(typeof spec.path === 'string' ? Buffer.from(spec.path) : spec.path),
    type: spec.type,
    mode: spec.type === 'deleted' ? 0 : typeBits | (spec.perm ?? (spec.type === 'dir' ? 0o755 : 0o644)),
    mtimeNs: spec.mtimeNs ?? 1_600_000_000_123_456_000n,
    size: spec.type === 'file' ? (spec.content?.byteLength ?? 0) : 0,
    chunks: new Uint8Array(Buffer.concat(plains.map(p => chunkId(p))))
  }
  if (spec.type === 'symlink') entry.target = new Uint8Array(Buffer.from(spec.target ?? ''))
  if (spec.linkKey !== undefined) entry.linkKey = spec.linkKey
  return { entry, plains }
}

class Store {
  readonly root: string
  readonly packs: PackStore
  readonly catalog: Catalog
  private nextSet = 1

  constructor (packBytes = 64 * 1024) {
    this.root = mkdtempSync(join(tmpdir(), 'holdfast-store-'))
    this.packs = new PackStore(join(this.root, 'packs'), packBytes)
    this.catalog = new Catalog(join(this.root, 'catalog.db'))
  }

  /**
   * What the manager does with a staging set: append the chunks the store lacks, fsync the
   * packs, then commit the snapshot in one catalog transaction.
   */
  commit (endpointId: number, specs: Spec[], options: { folder?: string, setId?: number, forceChunks?: boolean } = {}): { snapshotId: number, appended: number } {
    const entries: StagedEntry[] = []
    const plainById = new Map<string, Buffer>()
    for (const spec of specs) {
      const { entry, plains } = entryOf(spec, options.folder ?? 'home')
      entries.push(entry)
      for (const p of plains) plainById.set(toHex(chunkId(p)), p)
    }
    const ids = [...plainById.keys()].map(h => new Uint8Array(Buffer.from(h, 'hex')))
    const toStore = options.forceChunks === true ? ids : this.catalog.missingChunks(ids)
    const chunks: NewChunk[] = []
    for (const id of toStore) {
      const plain = plainById.get(toHex(id)) as Buffer
      const loc = this.packs.append(id, plain.byteLength, compressChunk(plain))
      chunks.push({ id, rawlen: plain.byteLength, ...loc })
    }
    this.packs.sync()
    const setId = options.setId ?? this.nextSet++
    const snapshotId = this.catalog.commitSnapshot({ endpointId, setId, sealedAt: 1000 + setId, committedAt: 2000 + setId, entries, chunks, proven: ids })
    return { snapshotId, appended: chunks.length }
  }

  async restore (endpointId: number, snapshotId: number, target: string, path?: string): Promise<RestoreSummary> {
    return await restoreSnapshot(this.catalog, this.packs, path === undefined ? { endpointId, snapshotId, target } : { endpointId, snapshotId, target, path })
  }

  dispose (): void {
    try { this.packs.close() } catch { /* already closed */ }
    try { this.catalog.close() } catch { /* already closed */ }
    removeTree(this.root)
  }
}

/** rm -rf that also copes with restored read-only directories. */
function removeTree (dir: string): void {
  if (!existsSync(dir)) return
  const makeWritable = (d: Buffer): void => {
    chmodSync(d, 0o700)
    for (const name of readdirSync(d, { encoding: 'buffer' })) {
      const child = Buffer.concat([d, Buffer.from('/'), name])
      if (lstatSync(child).isDirectory()) makeWritable(child)
    }
  }
  try { makeWritable(Buffer.from(dir)) } catch { /* best effort: rm may still manage */ }
  rmSync(dir, { recursive: true, force: true })
}

/** Every path under dir (raw names shown as latin1), with its kind: 'f', 'd', 'l'. */
function listTree (dir: string): string[] {
  const out: string[] = []
  const walk = (abs: Buffer, rel: string): void => {
    for (const name of readdirSync(abs, { encoding: 'buffer' }).sort(Buffer.compare)) {
      const child = Buffer.concat([abs, Buffer.from('/'), name])
      const childRel = rel === '' ? name.toString('latin1') : `${rel}/${name.toString('latin1')}`
      const st = lstatSync(child)
      out.push(`${st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'f'} ${childRel}`)
      if (st.isDirectory()) walk(child, childRel)
    }
  }
  if (existsSync(dir)) walk(Buffer.from(dir), '')
  return out
}

function assertMtime (path: string | Buffer, expectedNs: bigint): void {
  const actual = lstatSync(path, { bigint: true }).mtimeNs
  const diffUs = actual / 1000n - expectedNs / 1000n
  assert.ok(diffUs >= -1n && diffUs <= 1n, `mtime of ${String(path)} is ${actual}, expected ${expectedNs} (to the microsecond)`)
}

function perm (path: string | Buffer): number {
  return lstatSync(path).mode & 0o7777
}

async function assertThrowsCodeAsync (fn: () => Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof HoldfastError, `expected HoldfastError ${code}, got ${String(err)}`)
    assert.equal(err.code, code)
    return true
  })
}

function errorsByCode (summary: RestoreSummary): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const e of summary.errors) (out[e.code] ??= []).push(e.path)
  for (const k of Object.keys(out)) out[k].sort()
  return out
}

// ---------------------------------------------------------------- tests

describe('integration: store (packs, catalog, restore)', function () {
  this.timeout(60_000)
  const stores: Store[] = []
  const dirs: string[] = []
  const newStore = (packBytes?: number): Store => { const s = new Store(packBytes); stores.push(s); return s }
  const newDir = (): string => { const d = mkdtempSync(join(tmpdir(), 'holdfast-restore-')); dirs.push(d); return d }
  afterEach(() => {
    for (const s of stores.splice(0)) s.dispose()
    for (const d of dirs.splice(0)) removeTree(d)
  })

  it('restores two snapshots of one endpoint bit-exact, with modes, mtimes, symlinks, empty dirs and deletions', async () => {
    // packs of 8 KiB: the files below span several packs
    const store = newStore(8 * 1024)
    const ep = store.catalog.touchEndpoint('12D3KooWEndpointOne', 'laptop', 1)
    const a1 = randomBytes(10_000) // three chunks
    const a2 = Buffer.concat([a1.subarray(0, CHUNK), randomBytes(7_000)]) // first chunk unchanged
    const b = Buffer.from('#!/bin/sh\necho bravo\n')
    const c = randomBytes(50_000)
    const inner = Buffer.from('inside d\n'.repeat(1000))
    const deep = randomBytes(5_000)
    const rawName = Buffer.from([0x6e, 0xe9, 0x2e, 0x74, 0x78, 0x74]) // "né.txt" in latin-1: not UTF-8
    const raw = Buffer.from('latin-1 name\n')
    const t = (n: number): bigint => 1_650_000_000_000_000_000n + BigInt(n) * 1_234_567_000n

    const s1 = store.commit(ep, [
      { path: 'a', type: 'file', content: a1, perm: 0o640, mtimeNs: t(1) },
      { path: 'b', type: 'file', content: b, perm: 0o755, mtimeNs: t(2) },
      { path: 'd', type: 'dir', perm: 0o750, mtimeNs: t(3) },
      { path: 'd/inner.txt', type: 'file', content: inner, perm: 0o600, mtimeNs: t(4) },
      { path: 'l', type: 'symlink', target: 'a', mtimeNs: t(5) },
      { path: 'dangling', type: 'symlink', target: '../../nowhere/at/all', mtimeNs: t(6) },
      { path: 'e', type: 'dir', perm: 0o700, mtimeNs: t(7) },
      { path: 'empty.txt', type: 'file', content: Buffer.alloc(0), perm: 0o644, mtimeNs: t(8) },
      { path: 'ro', type: 'dir', perm: 0o555, mtimeNs: t(9) },
      { path: 'ro/locked.txt', type: 'file', content: Buffer.from('in a read-only dir'), perm: 0o444, mtimeNs: t(10) },
      { path: 'x/y/deep.bin', type: 'file', content: deep, mtimeNs: t(11) }, // parents not in the set
      { path: rawName, type: 'file', content: raw, mtimeNs: t(12) }
    ])
    assert.ok(store.packs.packNames().length > 1, 'the data spans more than one pack')
    const s2 = store.commit(ep, [
      { path: 'a', type: 'file', content: a2, perm: 0o600, mtimeNs: t(20) },
      { path: 'b', type: 'deleted' },
      { path: 'c', type: 'file', content: c, perm: 0o644, mtimeNs: t(21) }
    ])
    // a2 shares its first chunk with a1: only the new chunks were stored
    assert.equal(s2.appended, cut(a2).length - 1 + cut(c).length)
    assert.ok(s2.snapshotId > s1.snapshotId)

    const t1 = join(newDir(), 'restore-1') // absent: restore creates it
    const t2 = newDir() // present and empty
    const r1 = await store.restore(ep, s1.snapshotId, t1)
    const r2 = await store.restore(ep, s2.snapshotId, t2)
    assert.deepEqual(r1.errors, [])
    assert.deepEqual(r2.errors, [])
    assert.equal(r1.files, 7)
    assert.equal(r1.dirs, 3)
    assert.equal(r1.symlinks, 2)
    assert.equal(r1.bytes, a1.length + b.length + inner.length + 'in a read-only dir'.length + deep.length + raw.length)
    assert.equal(r2.files, 7)
    assert.equal(r2.bytes, a2.length + c.length + inner.length + 'in a read-only dir'.length + deep.length + raw.length)

    const rawPath = (root: string): Buffer => Buffer.concat([Buffer.from(join(root, 'home') + '/'), rawName])
    const common = ['d home', 'f home/' + rawName.toString('latin1'), 'l home/dangling', 'd home/d', 'f home/d/inner.txt', 'd home/e', 'f home/empty.txt', 'l home/l',
      'd home/ro', 'f home/ro/locked.txt', 'd home/x', 'd home/x/y', 'f home/x/y/deep.bin']
    assert.deepEqual(listTree(t1).sort(), ['f home/a', 'f home/b', ...common].sort())
    assert.deepEqual(listTree(t2).sort(), ['f home/a', 'f home/c', ...common].sort())

    // snapshot 1
    const h1 = join(t1, 'home')
    assert.deepEqual(readFileSync(join(h1, 'a')), a1)
    assert.equal(perm(join(h1, 'a')), 0o640)
    assertMtime(join(h1, 'a'), t(1))
    assert.deepEqual(readFileSync(join(h1, 'b')), b)
    assert.equal(perm(join(h1, 'b')), 0o755)
    assertMtime(join(h1, 'b'), t(2))
    assert.ok(lstatSync(join(h1, 'd')).isDirectory())
    assert.equal(perm(join(h1, 'd')), 0o750)
    assertMtime(join(h1, 'd'), t(3)) // set after its contents were written
    assert.deepEqual(readFileSync(join(h1, 'd', 'inner.txt')), inner)
    assert.equal(perm(join(h1, 'd', 'inner.txt')), 0o600)
    assert.ok(lstatSync(join(h1, 'l')).isSymbolicLink())
    assert.equal(readlinkSync(join(h1, 'l')), 'a')
    assertMtime(join(h1, 'l'), t(5))
    assert.equal(readlinkSync(join(h1, 'dangling')), '../../nowhere/at/all')
    assert.ok(lstatSync(join(h1, 'e')).isDirectory())
    assert.deepEqual(readdirSync(join(h1, 'e')), [])
    assert.equal(perm(join(h1, 'e')), 0o700)
    assertMtime(join(h1, 'e'), t(7))
    assert.equal(statSync(join(h1, 'empty.txt')).size, 0)
    assert.equal(perm(join(h1, 'ro')), 0o555)
    assert.equal(readFileSync(join(h1, 'ro', 'locked.txt'), 'utf8'), 'in a read-only dir')
    assert.equal(perm(join(h1, 'ro', 'locked.txt')), 0o444)
    assert.deepEqual(readFileSync(join(h1, 'x', 'y', 'deep.bin')), deep)
    assert.deepEqual(readFileSync(rawPath(t1)), raw)
    assertMtime(rawPath(t1), t(12))

    // snapshot 2: a is the new version, b is gone, c is new, the rest carried over
    const h2 = join(t2, 'home')
    assert.deepEqual(readFileSync(join(h2, 'a')), a2)
    assert.equal(perm(join(h2, 'a')), 0o600)
    assertMtime(join(h2, 'a'), t(20))
    assert.equal(existsSync(join(h2, 'b')), false)
    assert.deepEqual(readFileSync(join(h2, 'c')), c)
    assertMtime(join(h2, 'c'), t(21))
    assert.deepEqual(readFileSync(join(h2, 'd', 'inner.txt')), inner)
    assert.equal(readlinkSync(join(h2, 'l')), 'a')
    assert.deepEqual(readdirSync(join(h2, 'e')), [])
    assert.deepEqual(readFileSync(rawPath(t2)), raw)
  })

  it('restores hard links as one inode, a file ending in a hole at its length, and files larger than a writer batch, bit-exact', async () => {
    const store = newStore(256 * 1024)
    const ep = store.catalog.touchEndpoint('12D3KooWEndpointLinks', 'links', 1)
    const big = randomBytes(3 * 1024 * 1024 + 123) // incompressible: several writer batches
    const holed = Buffer.concat([randomBytes(100_000), Buffer.alloc(200_000)]) // ends in zeros
    const shared = randomBytes(9_000)
    const many = Array.from({ length: 300 }, (_, i) => ({ path: `many/f${i}`, type: 'file' as const, content: randomBytes(i * 37), perm: i % 2 === 0 ? 0o644 : 0o600, mtimeNs: 1_600_000_000_000_000_000n + BigInt(i) * 1_000_001n }))
    const { snapshotId } = store.commit(ep, [
      { path: 'big.bin', type: 'file', content: big },
      { path: 'holed.bin', type: 'file', content: holed, perm: 0o640 },
      { path: 'l1', type: 'file', content: shared, linkKey: '7:1' },
      { path: 'many', type: 'dir', perm: 0o750, mtimeNs: 1_500_000_000_000_000_000n },
      ...many,
      { path: 'z-l2', type: 'file', content: shared, linkKey: '7:1' }
    ])
    const target = join(newDir(), 'out')
    const summary = await store.restore(ep, snapshotId, target)
    assert.deepEqual(summary.errors, [])
    assert.equal(summary.files, 304)
    assert.equal(summary.bytes, big.byteLength + holed.byteLength + shared.byteLength + many.reduce((n, m) => n + m.content.byteLength, 0), 'the second name of a hard link writes no data')
    const root = join(target, 'home')
    assert.ok(readFileSync(join(root, 'big.bin')).equals(big))
    assert.ok(readFileSync(join(root, 'holed.bin')).equals(holed))
    assert.equal(statSync(join(root, 'holed.bin')).size, holed.byteLength)
    assert.equal(perm(join(root, 'holed.bin')), 0o640)
    assert.equal(statSync(join(root, 'l1')).ino, statSync(join(root, 'z-l2')).ino, 'hard links are one inode again')
    assert.equal(statSync(join(root, 'l1')).nlink, 2)
    for (const m of many) {
      assert.ok(readFileSync(join(root, m.path)).equals(m.content), m.path)
      assert.equal(perm(join(root, m.path)), m.perm)
      assertMtime(join(root, m.path), m.mtimeNs)
    }
    // the directory's mtime is set after its 300 files were written
    assertMtime(join(root, 'many'), 1_500_000_000_000_000_000n)
    assert.equal(perm(join(root, 'many')), 0o750)
  })

  it('restores a hard link whose first name is still in an unsent writer batch (no deadlock)', async () => {
    // Two small names of one inode, one after the other: the first name's batch is far from
    // full when the second name waits for it, so the sink must send it rather than wait.
    const store = newStore()
    const ep = store.catalog.touchEndpoint('12D3KooWEndpointLinkPair', 'pair', 1)
    const shared = randomBytes(20)
    const { snapshotId } = store.commit(ep, [
      { path: 'a', type: 'file', content: shared, linkKey: '9:1' },
      { path: 'b', type: 'file', content: shared, linkKey: '9:1' }
    ])
    const target = join(newDir(), 'out')
    const restored = store.restore(ep, snapshotId, target)
    const summary = await Promise.race([restored, new Promise<'hung'>(resolve => { setTimeout(() => { resolve('hung') }, 20_000).unref() })])
    assert.notEqual(summary, 'hung', 'the restore finished')
    if (summary === 'hung') return
    assert.deepEqual(summary.errors, [])
    const root = join(target, 'home')
    assert.ok(readFileSync(join(root, 'b')).equals(shared))
    assert.equal(statSync(join(root, 'a')).ino, statSync(join(root, 'b')).ino, 'one inode')
  })

  it('stores a chunk two endpoints share once', async () => {
    const store = newStore()
    const epA = store.catalog.touchEndpoint('12D3KooWAlpha', 'alpha', 1)
    const epB = store.catalog.touchEndpoint('12D3KooWBravo', 'bravo', 2)
    assert.notEqual(epA, epB)
    const shared = randomBytes(3 * CHUNK + 100)
    const sharedIds = cut(shared).map(p => chunkId(p))

    assert.equal(store.catalog.missingChunks(sharedIds).length, sharedIds.length)
    const a = store.commit(epA, [{ path: 'installer.bin', type: 'file', content: shared }], { folder: 'downloads' })
    assert.equal(a.appended, 4)
    const stored = store.catalog.storedBytes()
    const packBytes = store.packs.packNames().reduce((n, p) => n + statSync(join(store.packs.dir, p)).size, 0)
    assert.ok(stored > shared.length, 'random data does not compress')

    // the second endpoint finds nothing missing and stores nothing
    assert.deepEqual(store.catalog.missingChunks(sharedIds), [])
    const own = randomBytes(100)
    assert.deepEqual(store.catalog.missingChunks([...sharedIds, chunkId(own)]).map(id => toHex(id)), [toHex(chunkId(own))])
    const b = store.commit(epB, [{ path: 'copy-of-installer.bin', type: 'file', content: shared }], { folder: 'stuff' })
    assert.equal(b.appended, 0)
    assert.equal(store.catalog.storedBytes(), stored)
    assert.equal(store.packs.packNames().reduce((n, p) => n + statSync(join(store.packs.dir, p)).size, 0), packBytes)
    const snaps = store.catalog.snapshots()
    assert.equal(snaps.find(s => s.id === a.snapshotId)?.newBytes, stored)
    assert.equal(snaps.find(s => s.id === b.snapshotId)?.newBytes, 0)

    // two managers' worth of a race: the same chunks appended and committed again are ignored
    const again = store.commit(epB, [{ path: 'third.bin', type: 'file', content: shared }], { folder: 'stuff', forceChunks: true })
    assert.equal(again.appended, 4)
    assert.equal(store.catalog.storedBytes(), stored)
    assert.equal(store.catalog.snapshots().find(s => s.id === again.snapshotId)?.newBytes, 0)

    // committing the same staging set twice is idempotent
    const rerun = store.commit(epB, [{ path: 'ignored.bin', type: 'file', content: own }], { folder: 'stuff', setId: 2 })
    assert.equal(rerun.snapshotId, b.snapshotId)
    assert.equal(store.catalog.snapshots(epB).length, 2)

    // both endpoints restore the shared bytes
    const ta = newDir()
    const tb = newDir()
    assert.deepEqual((await store.restore(epA, a.snapshotId, ta)).errors, [])
    assert.deepEqual((await store.restore(epB, again.snapshotId, tb)).errors, [])
    assert.deepEqual(readFileSync(join(ta, 'downloads', 'installer.bin')), shared)
    assert.deepEqual(readFileSync(join(tb, 'stuff', 'copy-of-installer.bin')), shared)
    assert.deepEqual(readFileSync(join(tb, 'stuff', 'third.bin')), shared)
    assert.equal(existsSync(join(tb, 'stuff', 'ignored.bin')), false)
  })

  it('refuses to restore into a non-empty target and writes nothing', async () => {
    const store = newStore()
    const ep = store.catalog.touchEndpoint('12D3KooWTarget', '', 1)
    const s = store.commit(ep, [{ path: 'file.txt', type: 'file', content: Buffer.from('payload') }])
    const target = newDir()
    writeFileSync(join(target, 'keep.txt'), 'precious')
    mkdirSync(join(target, 'home'))
    await assertThrowsCodeAsync(async () => await store.restore(ep, s.snapshotId, target), 'RESTORE_TARGET_NOT_EMPTY')
    assert.deepEqual(listTree(target), ['d home', 'f keep.txt'])
    assert.equal(readFileSync(join(target, 'keep.txt'), 'utf8'), 'precious')

    // a target that is a file is refused too, and left alone
    const file = join(newDir(), 'a-file')
    writeFileSync(file, 'not a directory')
    await assertThrowsCodeAsync(async () => await store.restore(ep, s.snapshotId, file), 'RESTORE_TARGET_NOT_EMPTY')
    assert.equal(readFileSync(file, 'utf8'), 'not a directory')
  })

  it('skips hostile paths as RESTORE_PATH_UNSAFE and writes nothing outside the target', async () => {
    const store = newStore()
    const ep = store.catalog.touchEndpoint('12D3KooWHostile', 'mallory', 1)
    const sandbox = newDir()
    mkdirSync(join(sandbox, 'outside'))
    writeFileSync(join(sandbox, 'bystander.txt'), 'untouched')
    const target = join(sandbox, 'target')
    const evil = Buffer.from('pwned')
    const hostile: Spec[] = [
      { path: '../escape', type: 'file', content: evil },
      { path: '../../escape2', type: 'file', content: evil },
      { path: '/abs', type: 'file', content: evil },
      { path: 'a/../../b', type: 'file', content: evil },
      { path: 'a/../../../c', type: 'file', content: evil },
      { path: './dot', type: 'file', content: evil },
      { path: 'double//slash', type: 'file', content: evil },
      { path: 'trailing/', type: 'file', content: evil },
      { path: '..', type: 'dir' },
      { path: '../../outside/linked', type: 'symlink', target: '/etc/passwd' },
      { path: Buffer.from('nul\0byte'), type: 'file', content: evil },
      { path: 'x', type: 'file', content: evil, folder: '..' },
      { path: 'outside/y', type: 'file', content: evil, folder: '..' },
      { path: 'x', type: 'file', content: evil, folder: '.' },
      { path: 'x', type: 'file', content: evil, folder: 'a/b' },
      { path: 'x', type: 'file', content: evil, folder: '' }
    ]
    const safe: Spec[] = [
      { path: 'fine.txt', type: 'file', content: Buffer.from('fine') },
      // a link that points outside is restored as a link (never followed)...
      { path: 'link', type: 'symlink', target: join(sandbox, 'outside') },
      // ...and a file "through" it lands in a real directory inside the target, so the link
      // itself cannot be created afterwards
      { path: 'link/through.txt', type: 'file', content: evil },
      { path: '..hidden', type: 'file', content: Buffer.from('dots in a name are fine') }
    ]
    const s = store.commit(ep, [...hostile, ...safe], { folder: 'docs' })
    const before = listTree(sandbox)
    const summary = await store.restore(ep, s.snapshotId, target)

    const expectedUnsafe = hostile.map(h => {
      const { entry } = entryOf(h, 'docs')
      return `${entry.folder}/${displayPath(entry.path)}`
    }).sort()
    const byCode = errorsByCode(summary)
    assert.deepEqual(byCode.RESTORE_PATH_UNSAFE, expectedUnsafe)
    assert.deepEqual(byCode.EEXIST, ['docs/link'], 'the link whose path is now a real directory is reported, not forced')
    assert.equal(summary.errors.length, hostile.length + 1)

    // nothing changed outside the target
    const after = listTree(sandbox).filter(p => !/^[dfl] target(\/|$)/.test(p))
    assert.deepEqual(after, before)
    assert.deepEqual(readdirSync(join(sandbox, 'outside')), [])
    assert.equal(readFileSync(join(sandbox, 'bystander.txt'), 'utf8'), 'untouched')
    assert.equal(existsSync('/abs'), false)
    // and inside it, only the safe entries
    assert.deepEqual(listTree(target).sort(), ['d docs', 'f docs/..hidden', 'f docs/fine.txt', 'd docs/link', 'f docs/link/through.txt'].sort())
    assert.equal(readFileSync(join(target, 'docs', 'fine.txt'), 'utf8'), 'fine')
    assert.ok(lstatSync(join(target, 'docs', 'link')).isDirectory())
  })

  it('reports a flipped byte in a pack as CHUNK_HASH_MISMATCH and never writes the wrong bytes', async () => {
    const store = newStore(1024 * 1024)
    const ep = store.catalog.touchEndpoint('12D3KooWFlip', '', 1)
    const f1 = randomBytes(3 * CHUNK)
    const f2 = randomBytes(CHUNK)
    const f3 = randomBytes(100)
    const s = store.commit(ep, [
      { path: 'f1', type: 'file', content: f1 },
      { path: 'f2', type: 'file', content: f2 },
      { path: 'f3', type: 'file', content: f3 }
    ])
    // flip one byte in the middle of f1's SECOND chunk
    const second = chunkId(f1.subarray(CHUNK, 2 * CHUNK))
    const loc = store.catalog.chunkLocation(second)
    assert.ok(loc !== undefined)
    const packFile = join(store.packs.dir, loc.pack)
    const at = loc.offset + Math.floor(loc.clen / 2)
    const flipped = Buffer.from([readFileSync(packFile)[at] ^ 0x40])
    const fd = openSync(packFile, 'r+')
    try { writeSync(fd, flipped, 0, 1, at) } finally { closeSync(fd) }
    assert.equal(readFileSync(packFile)[at], flipped[0])

    const target = newDir()
    const summary = await store.restore(ep, s.snapshotId, target)
    assert.deepEqual(summary.errors.map(e => [e.path, e.code]), [['home/f1', 'CHUNK_HASH_MISMATCH']])
    // the good files are restored
    assert.deepEqual(readFileSync(join(target, 'home', 'f2')), f2)
    assert.deepEqual(readFileSync(join(target, 'home', 'f3')), f3)
    // f1 cannot be restored whole, so it is not left behind looking restored
    assert.equal(existsSync(join(target, 'home', 'f1')), false, 'no partial file under the real name')
  })

  it('reports a truncated pack as STORE_CORRUPT, a missing pack as STORE_CORRUPT, a missing chunk as CHUNK_MISSING', async () => {
    const store = newStore(1024 * 1024)
    const ep = store.catalog.touchEndpoint('12D3KooWTrunc', '', 1)
    const early = randomBytes(2 * CHUNK)
    const last = randomBytes(2 * CHUNK)
    const s = store.commit(ep, [
      { path: 'early', type: 'file', content: early },
      { path: 'last', type: 'file', content: last }
    ])
    assert.equal(store.packs.packNames().length, 1)
    store.packs.close()
    const pack = join(store.packs.dir, store.packs.packNames()[0])
    // cut the pack inside the data of the last chunk
    const lastLoc = store.catalog.chunkLocation(chunkId(last.subarray(CHUNK)))
    assert.ok(lastLoc !== undefined)
    assert.equal(statSync(pack).size, lastLoc.offset + lastLoc.clen, 'the last chunk ends the pack')
    truncateSync(pack, lastLoc.offset + 10)

    const target = newDir()
    const summary = await store.restore(ep, s.snapshotId, target)
    assert.deepEqual(summary.errors.map(e => [e.path, e.code]), [['home/last', 'STORE_CORRUPT']])
    assert.deepEqual(readFileSync(join(target, 'home', 'early')), early)

    // a pack that is gone altogether (a fresh PackStore: no cached descriptor)
    const reopened = new PackStore(store.packs.dir)
    try {
      unlinkSync(pack)
      const gone = await restoreSnapshot(store.catalog, reopened, { endpointId: ep, snapshotId: s.snapshotId, target: newDir() })
      assert.deepEqual(gone.errors.map(e => [e.path, e.code]).sort(), [['home/early', 'STORE_CORRUPT'], ['home/last', 'STORE_CORRUPT']])
    } finally {
      reopened.close()
    }

    // a version whose chunk the catalog never got
    const ghost = randomBytes(500)
    const { entry } = entryOf({ path: 'ghost', type: 'file', content: ghost }, 'home')
    // (`proven`: as if the puller had fetched it, so that the commit takes it; it never reached the index)
    const snap = store.catalog.commitSnapshot({ endpointId: ep, setId: 99, sealedAt: 1, committedAt: 2, entries: [entry], chunks: [], proven: [entry.chunks] })
    const t3 = newDir()
    const missing = await restoreSnapshot(store.catalog, store.packs, { endpointId: ep, snapshotId: snap, target: t3, path: 'home/ghost' })
    assert.deepEqual(missing.errors.map(e => [e.path, e.code]), [['home/ghost', 'CHUNK_MISSING']])
  })

  it('restores one subtree or one file, and reports a path that is not there as PATH_NOT_FOUND', async () => {
    const store = newStore()
    const ep = store.catalog.touchEndpoint('12D3KooWSubtree', '', 1)
    const s1 = store.commit(ep, [
      { path: 'sub', type: 'dir', perm: 0o751 },
      { path: 'sub/x.txt', type: 'file', content: Buffer.from('x') },
      { path: 'sub/deeper', type: 'dir' },
      { path: 'sub/deeper/y.txt', type: 'file', content: Buffer.from('y') },
      { path: 'sub/link', type: 'symlink', target: 'x.txt' },
      { path: 'subway.txt', type: 'file', content: Buffer.from('prefix, not a child') },
      { path: 'sub2/z.txt', type: 'file', content: Buffer.from('z') },
      { path: 'top.txt', type: 'file', content: Buffer.from('top') },
      { path: 'gone.txt', type: 'file', content: Buffer.from('soon deleted') },
      { path: 'sub/x.txt', type: 'file', content: Buffer.from('other folder'), folder: 'other' }
    ], { folder: 'folder' })
    const s2 = store.commit(ep, [{ path: 'gone.txt', type: 'deleted' }], { folder: 'folder' })

    const t = newDir()
    const r = await store.restore(ep, s2.snapshotId, t, 'folder/sub')
    assert.deepEqual(r.errors, [])
    assert.deepEqual(listTree(t).sort(), ['d folder', 'd folder/sub', 'd folder/sub/deeper', 'f folder/sub/deeper/y.txt', 'l folder/sub/link', 'f folder/sub/x.txt'].sort())
    assert.equal(readFileSync(join(t, 'folder', 'sub', 'x.txt'), 'utf8'), 'x')
    assert.equal(perm(join(t, 'folder', 'sub')), 0o751)

    // leading and trailing slashes name the same subtree
    const tSlash = newDir()
    assert.deepEqual((await store.restore(ep, s2.snapshotId, tSlash, '/folder/sub/')).errors, [])
    assert.deepEqual(listTree(tSlash).sort(), listTree(t).sort())

    const tFile = newDir()
    await store.restore(ep, s2.snapshotId, tFile, 'folder/sub/deeper/y.txt')
    assert.deepEqual(listTree(tFile).sort(), ['d folder', 'd folder/sub', 'd folder/sub/deeper', 'f folder/sub/deeper/y.txt'].sort())

    const tFolder = newDir()
    await store.restore(ep, s2.snapshotId, tFolder, 'folder')
    assert.ok(listTree(tFolder).every(p => / folder(\/|$)/.test(p)), 'nothing from the other folder')
    assert.ok(listTree(tFolder).includes('f folder/subway.txt'))
    assert.ok(!listTree(tFolder).includes('f folder/gone.txt'))

    for (const missing of ['folder/nope', 'folder/su', 'nofolder', 'folder/gone.txt', 'folder/sub/x.txt/more']) {
      const dir = newDir()
      await assertThrowsCodeAsync(async () => await store.restore(ep, s2.snapshotId, dir, missing), 'PATH_NOT_FOUND')
      assert.deepEqual(readdirSync(dir), [], `nothing written for ${missing}`)
    }
    // the deleted file is still there in the snapshot before its deletion
    const tOld = newDir()
    await store.restore(ep, s1.snapshotId, tOld, 'folder/gone.txt')
    assert.equal(readFileSync(join(tOld, 'folder', 'gone.txt'), 'utf8'), 'soon deleted')
  })

  it('folds versions across snapshots: newest wins, deletion hides, re-creation shows again', async () => {
    const store = newStore()
    const ep = store.catalog.touchEndpoint('12D3KooWFold', '', 1)
    const other = store.catalog.touchEndpoint('12D3KooWOther', '', 1)
    const v = (s: string): Buffer => Buffer.from(s)
    const s1 = store.commit(ep, [
      { path: 'p', type: 'file', content: v('p1') },
      { path: 'q', type: 'file', content: v('q1') },
      { path: 'r', type: 'file', content: v('r1') },
      { path: 'dir', type: 'dir' }
    ]).snapshotId
    // another endpoint's snapshot between ours, with the same paths: must never leak in
    const o1 = store.commit(other, [
      { path: 'p', type: 'file', content: v('other-p') },
      { path: 'zzz', type: 'file', content: v('other-only') },
      { path: 'q', type: 'deleted' }
    ]).snapshotId
    const s2 = store.commit(ep, [
      { path: 'p', type: 'file', content: v('p2!') },
      { path: 'q', type: 'deleted' }
    ]).snapshotId
    const s3 = store.commit(ep, [
      { path: 'q', type: 'file', content: v('q3!!') },
      { path: 'r', type: 'deleted' },
      { path: 'dir', type: 'deleted' },
      { path: 's', type: 'file', content: v('s3') }
    ]).snapshotId
    assert.ok(s1 < o1 && o1 < s2 && s2 < s3)

    const view = (snap: number, endpoint = ep): string[] => [...store.catalog.treeAt(endpoint, snap)]
      .map(e => `${e.folder}/${Buffer.from(e.path).toString()}:${e.type}:${e.size}@${e.snapshotId}`)
    assert.deepEqual(view(s1), [`home/dir:dir:0@${s1}`, `home/p:file:2@${s1}`, `home/q:file:2@${s1}`, `home/r:file:2@${s1}`])
    assert.deepEqual(view(s2), [`home/dir:dir:0@${s1}`, `home/p:file:3@${s2}`, `home/r:file:2@${s1}`])
    assert.deepEqual(view(s3), [`home/p:file:3@${s2}`, `home/q:file:4@${s3}`, `home/s:file:2@${s3}`])
    // a snapshot id of another endpoint folds only that endpoint's own versions
    assert.deepEqual(view(o1), [`home/dir:dir:0@${s1}`, `home/p:file:2@${s1}`, `home/q:file:2@${s1}`, `home/r:file:2@${s1}`])
    assert.deepEqual(view(o1, other), [`home/p:file:7@${o1}`, `home/zzz:file:10@${o1}`])
    assert.deepEqual(view(s3, other), view(o1, other))

    // and a restore of each snapshot shows the same fold on disk
    const contents = async (snap: number): Promise<Record<string, string>> => {
      const t = newDir()
      assert.deepEqual((await store.restore(ep, snap, t)).errors, [])
      const out: Record<string, string> = {}
      for (const p of listTree(t)) if (p.startsWith('f ')) out[p.slice(2)] = readFileSync(join(t, p.slice(2)), 'utf8')
      return out
    }
    assert.deepEqual(await contents(s1), { 'home/p': 'p1', 'home/q': 'q1', 'home/r': 'r1' })
    assert.deepEqual(await contents(s2), { 'home/p': 'p2!', 'home/r': 'r1' })
    assert.deepEqual(await contents(s3), { 'home/p': 'p2!', 'home/q': 'q3!!', 'home/s': 's3' })
  })
})
