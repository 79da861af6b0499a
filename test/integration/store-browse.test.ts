/**
 * Browse (ls, versions, find) and stats on a real catalog (node:sqlite) and real packs, built
 * the way the manager builds them: chunks appended and synced, then one commit per snapshot.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PackStore } from '../../src/store/core/packs.js'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type EntryType, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { findPaths, listTree, pathVersions, resolveSnapshot, type ListResult } from '../../src/store/queries/browse.js'
import { compileFindPattern, globMatches } from '../../src/store/queries/glob.js'
import { storeStats } from '../../src/store/queries/stats.js'
import { runCatalogTask } from '../../src/store/maintenance/catalog-tasks.js'
import { restoreSnapshot } from '../../src/store/restore.js'

const CHUNK = 4096
const T0 = Date.parse('2024-05-01T10:00:00Z')
const HOUR = 3600_000

interface Spec { path: string | Buffer, type: EntryType, content?: Buffer, perm?: number, mtimeNs?: bigint, target?: string, folder?: string }

class Store {
  readonly root = mkdtempSync(join(tmpdir(), 'holdfast-browse-'))
  readonly packs = new PackStore(join(this.root, 'packs'), 64 * 1024)
  readonly catalog = new Catalog(join(this.root, 'catalog.db'))
  private nextSet = new Map<number, number>()

  commit (endpointId: number, committedAt: number, specs: Spec[], folder = 'home'): number {
    const entries: StagedEntry[] = []
    const plain = new Map<string, Buffer>()
    for (const s of specs) {
      const content = s.content ?? Buffer.alloc(0)
      const parts: Buffer[] = []
      if (s.type === 'file') for (let i = 0; i < content.length; i += CHUNK) parts.push(content.subarray(i, i + CHUNK))
      for (const p of parts) plain.set(toHex(chunkId(p)), p)
      const typeBits = s.type === 'file' ? 0o100000 : s.type === 'dir' ? 0o040000 : s.type === 'symlink' ? 0o120000 : 0
      const e: StagedEntry = {
        folder: s.folder ?? folder,
        path: new Uint8Array(typeof s.path === 'string' ? Buffer.from(s.path) : s.path),
        type: s.type,
        mode: s.type === 'deleted' ? 0 : typeBits | (s.perm ?? (s.type === 'dir' ? 0o755 : 0o644)),
        mtimeNs: s.mtimeNs ?? BigInt(committedAt - 60_000) * 1_000_000n,
        size: s.type === 'file' ? content.length : 0,
        chunks: new Uint8Array(Buffer.concat(parts.map(p => chunkId(p))))
      }
      if (s.type === 'symlink') e.target = new Uint8Array(Buffer.from(s.target ?? ''))
      entries.push(e)
    }
    const ids = [...plain.keys()].map(h => new Uint8Array(Buffer.from(h, 'hex')))
    const chunks: NewChunk[] = []
    for (const id of this.catalog.missingChunks(ids)) {
      const p = plain.get(toHex(id)) as Buffer
      chunks.push({ id, rawlen: p.length, ...this.packs.append(id, p.length, compressChunk(p)) })
    }
    this.packs.sync()
    const setId = (this.nextSet.get(endpointId) ?? 0) + 1
    this.nextSet.set(endpointId, setId)
    return this.catalog.commitSnapshot({ endpointId, setId, sealedAt: committedAt - 1000, committedAt, entries, chunks, proven: ids })
  }

  dispose (): void {
    this.packs.close()
    this.catalog.close()
    rmSync(this.root, { recursive: true, force: true })
  }
}

function throwsCode (fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof HoldfastError && err.code === code, `expected ${code}`)
}

const names = (r: ListResult): string[] => r.entries.map(e => `${e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'file' ? 'f' : '?'} ${e.name}`)

describe('integration: store browse (ls, versions, find) and stats', function () {
  this.timeout(60_000)
  let store: Store
  let alpha: number
  let bravo: number
  const s: Record<string, number> = {}
  const notes1 = Buffer.from('# notes\n'.repeat(100))
  const notes2 = Buffer.from('# notes, edited\n'.repeat(300))
  const shared = randomBytes(5 * CHUNK + 17)
  const rawName = Buffer.from('docs/n\xe9.txt', 'latin1') // not UTF-8

  before(() => {
    store = new Store()
    alpha = store.catalog.touchEndpoint('12D3KooWAlphaAlphaAlpha', 'laptop', T0)
    bravo = store.catalog.touchEndpoint('12D3KooWBravoBravoBravo', 'desk', T0)
    s.a1 = store.commit(alpha, T0, [
      { path: 'docs', type: 'dir' },
      { path: 'docs/notes.md', type: 'file', content: notes1, perm: 0o640 },
      { path: 'docs/reports', type: 'dir' },
      { path: 'docs/reports/q1.docx', type: 'file', content: Buffer.from('q1') },
      { path: 'docs/reports/q2.docx', type: 'file', content: Buffer.from('q2 report') },
      // byte order: "a" < "a-b.txt" < "a.txt" < "a/x" — ls must list all three, once each
      { path: 'docs/a', type: 'dir' },
      { path: 'docs/a/x', type: 'file', content: Buffer.from('inside a') },
      { path: 'docs/a-b.txt', type: 'file', content: Buffer.from('a-b') },
      { path: 'docs/a.txt', type: 'file', content: Buffer.from('a.') },
      { path: rawName, type: 'file', content: Buffer.from('latin-1 name') },
      { path: 'docs/café.txt', type: 'file', content: Buffer.from('utf-8 name') },
      { path: 'x/y/deep.bin', type: 'file', content: Buffer.from('parents never recorded') },
      { path: 'link', type: 'symlink', target: 'docs/notes.md' },
      { path: 'installer.bin', type: 'file', content: shared },
      { path: 'plan.docx', type: 'file', content: Buffer.from('plan'), folder: 'work' }
    ])
    s.a2 = store.commit(alpha, T0 + HOUR, [
      { path: 'docs/notes.md', type: 'file', content: notes2, perm: 0o600 },
      { path: 'docs/reports/q1.docx', type: 'deleted' },
      { path: 'docs/reports/q3.docx', type: 'file', content: Buffer.from('q3!') }
    ])
    s.b1 = store.commit(bravo, T0 + 2 * HOUR, [
      { path: 'docs', type: 'dir' },
      { path: 'docs/notes.md', type: 'file', content: Buffer.from('bravo notes') },
      { path: 'copy-of-installer.bin', type: 'file', content: shared },
      { path: 'report-final.docx', type: 'file', content: Buffer.from('final'), folder: 'shared' }
    ])
    s.a3 = store.commit(alpha, T0 + 3 * HOUR, [
      { path: 'docs/a/x', type: 'deleted' },
      { path: 'docs/a', type: 'deleted' },
      { path: 'docs/reports/q1.docx', type: 'file', content: Buffer.from('q1, again') }
    ])
  })
  after(() => { store?.dispose() })

  const ls = (path?: string, snapshotId = s.a3, endpointId = alpha): ListResult => listTree(store.catalog, path === undefined ? { endpointId, snapshotId } : { endpointId, snapshotId, path })

  it('ls: the folders, a folder, a directory one level deep, a file', () => {
    assert.deepEqual(names(ls()), ['d home', 'd work'])
    assert.equal(ls().kind, 'root')
    const home = ls('home')
    assert.equal(home.kind, 'dir')
    assert.deepEqual(names(home), ['d docs', 'f installer.bin', 'l link', 'd x'])
    const link = home.entries.find(e => e.name === 'link')
    assert.equal(link?.target, 'docs/notes.md')
    assert.equal(home.entries.find(e => e.name === 'x')?.implicit, true, 'x is known only from x/y/deep.bin')
    assert.equal(home.entries.find(e => e.name === 'installer.bin')?.size, shared.length)

    // latest: docs/a was deleted in a3; notes.md is a2's version
    const docs = ls('home/docs')
    assert.deepEqual(names(docs), ['f a-b.txt', 'f a.txt', 'f café.txt', 'f notes.md', 'f n\\xe9.txt', 'd reports'])
    const notes = docs.entries.find(e => e.name === 'notes.md')
    assert.equal(notes?.size, notes2.length)
    assert.equal(notes?.snapshotId, s.a2)
    assert.equal((notes?.mode ?? 0) & 0o7777, 0o600)
    assert.equal(notes?.path, 'home/docs/notes.md')
    assert.equal(Buffer.from(docs.entries.find(e => e.name === 'n\\xe9.txt')?.rawPath ?? '', 'base64').toString('latin1'), rawName.toString('latin1'))

    // as of a1: docs/a is there, notes.md is the first version
    const old = ls('home/docs', s.a1)
    assert.deepEqual(names(old), ['d a', 'f a-b.txt', 'f a.txt', 'f café.txt', 'f notes.md', 'f n\\xe9.txt', 'd reports'])
    assert.equal(old.entries.find(e => e.name === 'notes.md')?.size, notes1.length)
    assert.equal(old.snapshot.id, s.a1)

    assert.deepEqual(names(ls('home/docs/reports', s.a1)), ['f q1.docx', 'f q2.docx'])
    assert.deepEqual(names(ls('home/docs/reports', s.a2)), ['f q2.docx', 'f q3.docx'])
    assert.deepEqual(names(ls('home/docs/reports', s.a3)), ['f q1.docx', 'f q2.docx', 'f q3.docx'])
    assert.deepEqual(names(ls('/home/docs/reports/')), names(ls('home/docs/reports')), 'slashes around the path do not matter')
    assert.deepEqual(names(ls('home/x')), ['d y'])
    assert.deepEqual(names(ls('home/x/y')), ['f deep.bin'])

    const file = ls('home/docs/reports/q1.docx')
    assert.equal(file.kind, 'file')
    assert.deepEqual(file.entries.map(e => [e.name, e.size, e.snapshotId]), [['q1.docx', 9, s.a3]])
    // a non-UTF-8 name, given as ls shows it
    assert.equal(ls('home/docs/n\\xe9.txt').entries[0].size, 'latin-1 name'.length)
    // the other endpoint's tree never leaks in
    assert.deepEqual(names(ls('home/docs', s.b1, bravo)), ['f notes.md'])
    assert.deepEqual(names(ls(undefined, s.b1, bravo)), ['d home', 'd shared'])
  })

  it('ls: a limit truncates and says so', () => {
    const r = listTree(store.catalog, { endpointId: alpha, snapshotId: s.a3, path: 'home/docs', limit: 2 })
    assert.equal(r.entries.length, 2)
    assert.equal(r.truncated, true)
    assert.equal(ls('home/docs').truncated, false)
  })

  it('ls: a path that is not there is PATH_NOT_FOUND, a snapshot that is not the endpoint\'s SNAPSHOT_UNKNOWN', () => {
    throwsCode(() => ls('home/nope'), 'PATH_NOT_FOUND')
    throwsCode(() => ls('nofolder'), 'PATH_NOT_FOUND')
    throwsCode(() => ls('home/docs/a'), 'PATH_NOT_FOUND') // deleted in a3
    throwsCode(() => ls('home/docs/reports/q3.docx', s.a1), 'PATH_NOT_FOUND') // not yet in a1
    throwsCode(() => ls('home/docs/notes.md/more'), 'PATH_NOT_FOUND')
    throwsCode(() => ls('home', s.b1), 'SNAPSHOT_UNKNOWN')
    const ep = store.catalog.endpointById(alpha)
    throwsCode(() => resolveSnapshot(store.catalog, ep, { snapshot: s.b1 }), 'SNAPSHOT_UNKNOWN')
    throwsCode(() => resolveSnapshot(store.catalog, ep, { at: T0 - 1 }), 'SNAPSHOT_UNKNOWN')
    throwsCode(() => store.catalog.findEndpoint('nobody'), 'PEER_UNKNOWN')
  })

  it('--at picks the newest snapshot committed at or before the time', () => {
    const ep = store.catalog.endpointById(alpha)
    assert.equal(resolveSnapshot(store.catalog, ep, { at: T0 }).id, s.a1)
    assert.equal(resolveSnapshot(store.catalog, ep, { at: T0 + HOUR - 1 }).id, s.a1)
    assert.equal(resolveSnapshot(store.catalog, ep, { at: T0 + HOUR }).id, s.a2)
    assert.equal(resolveSnapshot(store.catalog, ep, { at: T0 + 2.5 * HOUR }).id, s.a2, 'bravo\'s snapshot in between does not count')
    assert.equal(resolveSnapshot(store.catalog, ep, { at: T0 + 100 * HOUR }).id, s.a3)
    assert.equal(resolveSnapshot(store.catalog, ep, {}).id, s.a3)
    assert.equal(resolveSnapshot(store.catalog, ep, { snapshot: s.a2 }).id, s.a2)
  })

  it('versions: every version of a path, deletions included', () => {
    const v = pathVersions(store.catalog, alpha, 'home/docs/reports/q1.docx')
    assert.equal(v.path, 'home/docs/reports/q1.docx')
    assert.deepEqual(v.versions.map(x => [x.snapshotId, x.type, x.deleted, x.size, x.committedAt]), [
      [s.a1, 'file', false, 2, T0],
      [s.a2, 'deleted', true, 0, T0 + HOUR],
      [s.a3, 'file', false, 9, T0 + 3 * HOUR]
    ])
    assert.deepEqual(pathVersions(store.catalog, alpha, 'home/docs/notes.md').versions.map(x => [x.snapshotId, x.size, x.mode & 0o777, x.chunks]), [
      [s.a1, notes1.length, 0o640, 1],
      [s.a2, notes2.length, 0o600, 2]
    ])
    assert.equal(pathVersions(store.catalog, alpha, 'home/docs/n\\xe9.txt').versions.length, 1)
    assert.equal(pathVersions(store.catalog, alpha, 'home/docs').versions[0].type, 'dir')
    throwsCode(() => pathVersions(store.catalog, alpha, 'home/docs/none'), 'PATH_NOT_FOUND')
    throwsCode(() => pathVersions(store.catalog, bravo, 'home/docs/reports/q1.docx'), 'PATH_NOT_FOUND')
    throwsCode(() => pathVersions(store.catalog, alpha, 'home'), 'ADMIN_BAD_REQUEST')
  })

  it('find: a name at any depth, a path with **, the folder named or not, deletions, limits', () => {
    const hits = (pattern: string, options: { endpointId?: number, limit?: number } = {}): string[] =>
      findPaths(store.catalog, pattern, options).hits.map(h => `${h.endpoint}:${h.path}@${h.snapshotId}${h.deleted ? `:deleted(${h.liveSnapshotId ?? '-'})` : ''}`)
    assert.deepEqual(hits('*.docx'), [
      `laptop:home/docs/reports/q1.docx@${s.a3}`, `laptop:home/docs/reports/q2.docx@${s.a1}`, `laptop:home/docs/reports/q3.docx@${s.a2}`,
      `laptop:work/plan.docx@${s.a1}`, `desk:shared/report-final.docx@${s.b1}`
    ])
    assert.deepEqual(hits('docs/**/q*'), [`laptop:home/docs/reports/q1.docx@${s.a3}`, `laptop:home/docs/reports/q2.docx@${s.a1}`, `laptop:home/docs/reports/q3.docx@${s.a2}`])
    assert.deepEqual(hits('docs/*.md'), [`laptop:home/docs/notes.md@${s.a2}`, `desk:home/docs/notes.md@${s.b1}`])
    assert.deepEqual(hits('home/docs/*.md'), hits('docs/*.md'), 'with the folder name in front')
    assert.deepEqual(hits('docs/*.md', { endpointId: bravo }), [`desk:home/docs/notes.md@${s.b1}`])
    assert.deepEqual(hits('**/report*'), [`laptop:home/docs/reports@${s.a1}`, `desk:shared/report-final.docx@${s.b1}`])
    // deleted paths are found, with the snapshot that still holds them
    assert.deepEqual(hits('docs/a/*'), [`laptop:home/docs/a/x@${s.a3}:deleted(${s.a1})`])
    const gone = findPaths(store.catalog, 'x', { endpointId: alpha }).hits.find(h => h.path === 'home/docs/a/x')
    assert.equal(gone?.type, 'file')
    assert.equal(gone?.size, 'inside a'.length)
    // ? is one character: é is two bytes in UTF-8 and one in the latin-1 name
    assert.deepEqual(hits('caf?.txt'), [`laptop:home/docs/café.txt@${s.a1}`])
    assert.deepEqual(hits('n?.txt'), [`laptop:home/docs/n\\xe9.txt@${s.a1}`])
    assert.deepEqual(hits('[a-b]*.txt'), [`laptop:home/docs/a-b.txt@${s.a1}`, `laptop:home/docs/a.txt@${s.a1}`])
    assert.deepEqual(hits('[!a]*.txt'), [`laptop:home/docs/café.txt@${s.a1}`, `laptop:home/docs/n\\xe9.txt@${s.a1}`])
    assert.deepEqual(hits('nothing-like-this'), [])
    const limited = findPaths(store.catalog, '*', { limit: 3 })
    assert.equal(limited.hits.length, 3)
    assert.equal(limited.truncated, true)
    assert.equal(findPaths(store.catalog, '*.docx').truncated, false)
    throwsCode(() => findPaths(store.catalog, ''), 'ADMIN_BAD_REQUEST')
    throwsCode(() => findPaths(store.catalog, 'a\\'), 'ADMIN_BAD_REQUEST')
  })

  it('glob: components, **, classes, escapes, raw bytes', () => {
    const m = (pattern: string, path: string | Buffer): boolean => {
      const c = compileFindPattern(pattern)
      return globMatches(c.forPath.regex, typeof path === 'string' ? Buffer.from(path) : path)
    }
    assert.ok(m('*.docx', 'a.docx'))
    assert.ok(m('*.docx', 'deep/down/a.docx'))
    assert.ok(!m('*.docx', 'a.docx/inside'))
    assert.ok(!m('docs/*.md', 'docs/sub/a.md'), '* stays inside one component')
    assert.ok(m('docs/**/a.md', 'docs/a.md'), '** can be no directory')
    assert.ok(m('docs/**/a.md', 'docs/x/y/a.md'))
    assert.ok(m('docs/**', 'docs/x/y'))
    assert.ok(!m('docs/**', 'docs'))
    assert.ok(m('\\*.md', '*.md'))
    assert.ok(!m('\\*.md', 'x.md'))
    assert.ok(m('[]x]', ']'))
    assert.ok(m('a[0-9]b', 'a7b'))
    assert.ok(!m('a[0-9]b', 'a/b'))
    assert.ok(!m('a?b', 'a/b'), '? never matches /')
    assert.ok(m('*', Buffer.from([0xff, 0xfe])), 'any bytes')
    assert.ok(m('[é]', 'é'))
    assert.ok(m('[!é]', 'e'))
    assert.ok(!m('[!é]', 'é'))
    assert.ok(m('a.b', 'a.b'))
    assert.ok(!m('a.b', 'axb'), 'regex characters are literal')
    const c = compileFindPattern('docs/**/report*')
    assert.equal(c.forPath.prefix.toString(), 'docs/')
    assert.equal(c.forPath.literal.toString(), 'report')
    assert.equal(c.folderPart?.rest.prefix.toString(), '')
    assert.equal(compileFindPattern('*.docx').forPath.prefix.length, 0)
    throwsCode(() => compileFindPattern('[é-z]'), 'ADMIN_BAD_REQUEST')
  })

  it('stats: logical and stored bytes of each latest tree, shared chunks counted once in the total', () => {
    const st = storeStats(store.catalog)
    const a = st.endpoints.find(e => e.peerId === '12D3KooWAlphaAlphaAlpha')
    const b = st.endpoints.find(e => e.peerId === '12D3KooWBravoBravoBravo')
    assert.ok(a !== undefined && b !== undefined)
    // alpha's latest tree: notes2, q1 (again), q2, q3, a-b, a., latin-1, café, deep, installer, plan
    const aFiles = [notes2.length, 9, 9, 3, 3, 2, 12, 10, 22, shared.length, 4]
    assert.equal(a.files, aFiles.length)
    assert.equal(a.logicalBytes, aFiles.reduce((n, x) => n + x, 0))
    assert.equal(a.snapshotId, s.a3)
    const bFiles = ['bravo notes'.length, shared.length, 5]
    assert.equal(b.files, 3)
    assert.equal(b.logicalBytes, bFiles.reduce((n, x) => n + x, 0))
    // stored: the compressed length of the distinct chunks each tree references, from the catalog
    const clenOf = (content: Buffer): number => {
      let n = 0
      const seen = new Set<string>()
      for (let i = 0; i < content.length; i += CHUNK) {
        const id = chunkId(content.subarray(i, i + CHUNK))
        if (seen.has(toHex(id))) continue
        seen.add(toHex(id))
        n += store.catalog.chunkLocation(id)?.clen ?? NaN
      }
      return n
    }
    const sharedStored = clenOf(shared)
    assert.equal(b.storedBytes, clenOf(Buffer.from('bravo notes')) + sharedStored + clenOf(Buffer.from('final')))
    assert.equal(b.ownBytes, b.storedBytes - sharedStored, 'the installer is shared with alpha')
    assert.equal(st.total.storedBytes, a.storedBytes + b.storedBytes - sharedStored, 'a shared chunk counts once')
    assert.equal(st.total.logicalBytes, a.logicalBytes + b.logicalBytes)
    assert.equal(st.total.files, a.files + b.files)
    assert.ok(st.total.storeBytes > st.total.storedBytes, 'the store also holds old versions (notes1, q1 "q1")')
    assert.equal(st.total.storeBytes, store.catalog.storedBytes())
    assert.equal(st.total.snapshots, 4)
    assert.equal(a.dedupRatio, Math.round(a.logicalBytes / a.storedBytes * 1000) / 1000)
    assert.ok(a.uniqueBytes <= a.logicalBytes)
  })

  it('stats in a worker thread (as the manager runs them) agree with stats in place', async () => {
    const inWorker = await runCatalogTask({ kind: 'stats', catalogFile: store.catalog.file })
    assert.deepEqual({ ...inWorker, ms: 0 }, { ...storeStats(store.catalog), ms: 0 })
  })

  it('stats on an empty catalog', () => {
    const empty = new Store()
    try {
      const st = storeStats(empty.catalog)
      assert.deepEqual(st.endpoints, [])
      assert.equal(st.total.logicalBytes, 0)
      assert.equal(st.total.storedBytes, 0)
      assert.equal(st.total.dedupRatio, 0)
    } finally {
      empty.dispose()
    }
  })

  it('path specs: ls, versions, find and restore --path read the same string the same way (escapes, non-UTF-8 bytes, slashes)', async () => {
    // what the latest tree holds at each path (keyed by the path's bytes, latin1)
    const key = (path: Buffer | string): string => (typeof path === 'string' ? Buffer.from(path) : path).toString('latin1')
    const contents = new Map<string, Buffer>([
      [key(rawName), Buffer.from('latin-1 name')],
      [key('docs/café.txt'), Buffer.from('utf-8 name')],
      [key('docs/reports/q2.docx'), Buffer.from('q2 report')],
      [key('docs/notes.md'), notes2]
    ])
    // each spec, and the path (under folder 'home') that every command must select for it
    const table: Array<{ spec: string, file: Buffer }> = [
      { spec: 'home/docs/n\\xe9.txt', file: rawName },
      { spec: '/home//docs/n\\xE9.txt/', file: rawName },
      { spec: 'home/docs/café.txt', file: Buffer.from('docs/café.txt') },
      { spec: 'home/docs/caf\\xc3\\xa9.txt', file: Buffer.from('docs/café.txt') },
      { spec: 'home//docs///reports/q2.docx/', file: Buffer.from('docs/reports/q2.docx') },
      { spec: '//home/docs/notes.md', file: Buffer.from('docs/notes.md') }
    ]
    const root = mkdtempSync(join(tmpdir(), 'holdfast-spec-'))
    try {
      for (const [i, { spec, file }] of table.entries()) {
        const want = key(file)
        const l = ls(spec)
        assert.equal(l.kind, 'file', `ls ${spec}`)
        assert.deepEqual(l.entries.map(e => Buffer.from(e.rawPath, 'base64').toString('latin1')), [want], `ls ${spec}`)
        const v = pathVersions(store.catalog, alpha, spec)
        assert.equal(Buffer.from(v.rawPath, 'base64').toString('latin1'), want, `versions ${spec}`)
        const f = findPaths(store.catalog, spec, { endpointId: alpha })
        assert.deepEqual(f.hits.map(h => `${h.folder}:${Buffer.from(h.rawPath, 'base64').toString('latin1')}`), [`home:${want}`], `find ${spec}`)
        const target = join(root, String(i))
        const r = await restoreSnapshot(store.catalog, store.packs, { endpointId: alpha, snapshotId: s.a3, path: spec, target })
        assert.equal(r.files, 1, `restore --path ${spec}`)
        const written = Buffer.concat([Buffer.from(target), Buffer.from('/home/'), file])
        assert.deepEqual(readFileSync(written), contents.get(want), `restore --path ${spec}: bytes restored equal bytes written`)
      }
      // a directory: ls lists what restore writes under it, whatever the slashes
      const dir = ls('/home//docs/reports/')
      assert.equal(dir.kind, 'dir')
      const target = join(root, 'dir')
      await restoreSnapshot(store.catalog, store.packs, { endpointId: alpha, snapshotId: s.a3, path: 'home//docs/reports/', target })
      assert.deepEqual(readdirSync(join(target, 'home', 'docs', 'reports')).sort(), dir.entries.map(e => e.name).sort())
      assert.deepEqual(Buffer.from(pathVersions(store.catalog, alpha, 'home//docs/reports/').rawPath, 'base64').toString(), 'docs/reports')
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})
