/**
 * The store commands end to end: real daemons as separate processes (found over mDNS in the
 * private namespace), a real backup, then ls / versions / find / stats / verify through the
 * real CLI; and verify failing, with a non-zero exit, after a byte of a pack is flipped on disk.
 */
import { strict as assert } from 'node:assert'
import { closeSync, lstatSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { TestFleet, cliJson, cliJsonStatus, runCli, type AgentHandle } from '../support/fleet.js'
import { makeSampleTree } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import type { RoundResult } from '../../src/roles/manager/manager.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'
import type { FindResult, ListResult, VersionsResult } from '../../src/store/queries/browse.js'
import type { StoreStats } from '../../src/store/queries/stats.js'
import type { VerifyReport } from '../../src/store/maintenance/verify.js'

/** Sum of the sizes of the regular files under dir (what stats calls logical bytes). */
function fileBytes (dir: Buffer): { files: number, bytes: number } {
  let files = 0
  let bytes = 0
  for (const name of readdirSync(dir, { encoding: 'buffer' })) {
    const p = Buffer.concat([dir, Buffer.from('/'), name])
    const st = lstatSync(p)
    if (st.isDirectory()) {
      const sub = fileBytes(p)
      files += sub.files
      bytes += sub.bytes
    } else if (st.isFile()) {
      files++
      bytes += st.size
    }
  }
  return { files, bytes }
}

describe('end to end: store commands (ls, versions, find, stats, verify) through the CLI', function () {
  let root: string
  let fleet: TestFleet
  let alice: AgentHandle
  let bob: AgentHandle
  let sock: string[]
  let first: SnapshotRow
  let second: SnapshotRow

  const backup = async (agents: AgentHandle[]): Promise<void> => {
    for (const a of agents) await cliJson(['scan-now', '--socket', a.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '2', '--timeout', '30'])
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed: ${p.error ?? ''}`)
  }

  before(async function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-e2e-store-'))
    fleet = new TestFleet(root)
    makeSampleTree(join(root, 'alice'), 'alice')
    makeSampleTree(join(root, 'bob'), 'bob')
    await fleet.init({ bandwidth: 200 * 1024 * 1024 })
    alice = await fleet.addAgent('alice', join(root, 'alice'))
    bob = await fleet.addAgent('bob', join(root, 'bob'))
    await fleet.startManager()
    await fleet.startAgent(alice)
    await fleet.startAgent(bob)
    sock = ['--socket', fleet.managerSocket]
    await backup([alice, bob])
    // a second backup of alice: notes.md grows, empty.txt goes
    writeFileSync(join(alice.folder, 'docs', 'notes.md'), 'rewritten\n'.repeat(2000))
    unlinkSync(join(alice.folder, 'empty.txt'))
    await backup([alice])
    const snaps = await cliJson<SnapshotRow[]>(['snapshots', ...sock, '--endpoint', 'alice'])
    assert.equal(snaps.length, 2)
    ;[first, second] = snaps
  })

  after(async function () {
    await fleet?.stopAll()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('ls lists the folders, a directory one level deep, and the tree as of an earlier snapshot or time', async () => {
    const top = await cliJson<ListResult>(['ls', 'alice', ...sock])
    assert.deepEqual(top.entries.map(e => e.name), ['alice'])
    assert.equal(top.snapshot.id, second.id)

    const folder = await cliJson<ListResult>(['ls', 'alice', 'alice', ...sock])
    const names = folder.entries.map(e => e.name)
    assert.deepEqual(names, [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))))
    for (const n of ['README.txt', 'big-alice.bin', 'dangling-link', 'deep', 'docs', 'empty-dir', 'link-to-notes', 'script.sh', 'shared-installer.bin']) assert.ok(names.includes(n), `${n} in ${names.join(' ')}`)
    assert.ok(!names.includes('empty.txt'), 'deleted in the second backup')
    assert.ok(!names.includes('notes.md'), 'one level only')
    const script = folder.entries.find(e => e.name === 'script.sh')
    assert.equal((script?.mode ?? 0) & 0o777, 0o750)
    assert.equal(folder.entries.find(e => e.name === 'link-to-notes')?.target, 'docs/notes.md')
    // set through utimes (a double): within a millisecond of what the sample tree asked for
    const readme = folder.entries.find(e => e.name === 'README.txt')
    assert.ok(Math.abs(Date.parse(readme?.mtime ?? '') - Date.parse('2020-01-02T03:04:05.678Z')) <= 1, readme?.mtime)

    const docs = await cliJson<ListResult>(['ls', 'alice', 'alice/docs', ...sock])
    assert.deepEqual(docs.entries.map(e => `${e.type}:${e.name}`), ['file:notes.md', 'file:n\\xe9.txt', 'dir:reports'])
    assert.equal(docs.entries[0].size, 'rewritten\n'.length * 2000)

    // the first snapshot: by id, and by time (ISO, the commit time of the first backup)
    const old = await cliJson<ListResult>(['ls', 'alice', 'alice/docs', '--snapshot', String(first.id), ...sock])
    assert.equal(old.entries.find(e => e.name === 'notes.md')?.size, '# Notes of alice\n\n'.length + 'line of text\n'.length * 500)
    const atFirst = await cliJson<ListResult>(['ls', 'alice', 'alice', '--at', new Date(first.committedAt).toISOString(), ...sock])
    assert.equal(atFirst.snapshot.id, first.id)
    assert.ok(atFirst.entries.some(e => e.name === 'empty.txt'), 'still there in the first snapshot')

    // for people: a table, names as ls shows them
    const human = await runCli(['ls', 'alice', 'alice/docs', ...sock])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /MODE\s+SIZE\s+MODIFIED\s+SNAPSHOT\s+NAME/)
    assert.match(human.stdout, /-rw-r--r--\s+19\.5 KiB\s+.*notes\.md/)
    assert.match(human.stdout, /drwx.*reports\//)
    assert.match(human.stdout, /n\\xe9\.txt/)
  })

  it('versions lists every version of a path, with the deletion', async () => {
    const notes = await cliJson<VersionsResult>(['versions', 'alice', 'alice/docs/notes.md', ...sock])
    assert.deepEqual(notes.versions.map(v => [v.snapshotId, v.type, v.size]), [
      [first.id, 'file', '# Notes of alice\n\n'.length + 'line of text\n'.length * 500],
      [second.id, 'file', 'rewritten\n'.length * 2000]
    ])
    const empty = await cliJson<VersionsResult>(['versions', 'alice', 'alice/empty.txt', ...sock])
    assert.deepEqual(empty.versions.map(v => [v.snapshotId, v.deleted]), [[first.id, false], [second.id, true]])
    const raw = await cliJson<VersionsResult>(['versions', 'alice', 'alice/docs/n\\xe9.txt', ...sock])
    assert.equal(raw.versions.length, 1)
    const human = await runCli(['versions', 'alice', 'alice/empty.txt', ...sock])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /SNAPSHOT\s+COMMITTED\s+TYPE/)
    assert.match(human.stdout, new RegExp(`${second.id}\\s+\\S+ \\S+\\s+deleted`))
  })

  it('find searches the whole fleet by glob', async () => {
    const csv = await cliJson<FindResult>(['find', '*.csv', ...sock])
    assert.deepEqual(csv.hits.map(h => `${h.endpoint}:${h.path}`).sort(), ['alice:alice/docs/reports/q3.csv', 'bob:bob/docs/reports/q3.csv'])
    const deep = await cliJson<FindResult>(['find', 'deep/**/leaf*', '--endpoint', 'bob', ...sock])
    assert.deepEqual(deep.hits.map(h => h.path), ['bob/deep/a/b/c/d/leaf.bin'])
    const gone = await cliJson<FindResult>(['find', 'empty.txt', ...sock])
    const byEndpoint = Object.fromEntries(gone.hits.map(h => [h.endpoint, h]))
    assert.equal(byEndpoint.alice?.deleted, true)
    assert.equal(byEndpoint.alice?.liveSnapshotId, first.id)
    assert.equal(byEndpoint.bob?.deleted, false)
    const human = await runCli(['find', 'alice/*.bin', ...sock])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /ENDPOINT\s+PATH/)
    assert.match(human.stdout, /alice\s+alice\/big-alice\.bin/)
    assert.doesNotMatch(human.stdout, /bob/)
  })

  it('stats shows logical bytes per endpoint and stores the shared installer once', async () => {
    const st = await cliJson<StoreStats>(['stats', ...sock])
    for (const a of [alice, bob]) {
      const e = st.endpoints.find(x => x.peerId === a.peerId)
      assert.ok(e !== undefined)
      const disk = fileBytes(Buffer.from(a.folder))
      assert.equal(e.files, disk.files, `${a.name}: files`)
      assert.equal(e.logicalBytes, disk.bytes, `${a.name}: logical bytes`)
      assert.ok(e.storedBytes > 3 * 1024 * 1024, 'random data is stored about as large as it is')
    }
    const sum = st.endpoints.reduce((n, e) => n + e.storedBytes, 0)
    assert.ok(sum - st.total.storedBytes > 3 * 1024 * 1024 * 0.9, `the 3 MiB installer counts once in the total (${sum} vs ${st.total.storedBytes})`)
    assert.ok(st.total.storeBytes >= st.total.storedBytes, 'the store also holds the old notes.md')
    const human = await runCli(['stats', ...sock])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /ENDPOINT\s+SNAPSHOT\s+FILES\s+LOGICAL/)
    assert.match(human.stdout, /^total\s/m)
  })

  it('one-line errors with exit statuses, and --help', async () => {
    const nobody = await runCli(['ls', 'nobody', ...sock])
    assert.equal(nobody.code, 1)
    assert.match(nobody.stderr, /PEER_UNKNOWN/)
    assert.equal(nobody.stderr.trim().split('\n').length, 1)
    const nopath = await runCli(['ls', 'alice', 'alice/no/such/path', ...sock])
    assert.equal(nopath.code, 1)
    assert.match(nopath.stderr, /PATH_NOT_FOUND/)
    const badAt = await runCli(['ls', 'alice', '--at', 'yesterday', ...sock])
    assert.equal(badAt.code, 2)
    assert.match(badAt.stderr, /ADMIN_BAD_REQUEST.*--at/)
    const early = await runCli(['ls', 'alice', '--at', '2001-01-01', ...sock])
    assert.equal(early.code, 1)
    assert.match(early.stderr, /SNAPSHOT_UNKNOWN/)
    const noVersions = await runCli(['versions', 'bob', 'bob/never-there', ...sock])
    assert.equal(noVersions.code, 1)
    assert.match(noVersions.stderr, /PATH_NOT_FOUND/)
    const badPattern = await runCli(['find', '[é-z]', ...sock])
    assert.equal(badPattern.code, 2)
    for (const cmd of ['ls', 'versions', 'find', 'stats', 'verify']) {
      const help = await runCli([cmd, '--help'])
      assert.equal(help.code, 0)
      assert.match(help.stdout, new RegExp(`^holdfast ${cmd}`))
      assert.match(help.stdout, /--json/)
    }
    const unreachable = await runCli(['stats', '--socket', join(root, 'no.sock')])
    assert.equal(unreachable.code, 3)
  })

  it('verify passes the real store, then fails with exit 1 after a byte of a pack is flipped, naming the file and snapshots', async () => {
    const clean = await cliJsonStatus<VerifyReport>(['verify', '--read-data', ...sock])
    assert.equal(clean.code, 0, clean.stderr)
    assert.equal(clean.json.ok, true)
    assert.ok(clean.json.chunks.total > 0 && clean.json.chunks.checked === clean.json.chunks.total)
    assert.ok(clean.json.chunks.bytesRead > 9 * 1024 * 1024, 'all the data was read')

    // where alice's big file starts, from the manager's catalog (read beside the running daemon)
    const db = new DatabaseSync(join(fleet.managerDir, 'catalog.db'), { readOnly: true })
    let loc: { pack: string, offset: number, clen: number, id: string }
    try {
      const v = db.prepare("SELECT chunks FROM file_versions WHERE folder = 'alice' AND path = ? ORDER BY snapshot_id LIMIT 1").get(Buffer.from('big-alice.bin'))
      const id = (v?.chunks as Uint8Array).subarray(0, 32)
      const c = db.prepare('SELECT p.name AS pack, c.offset, c.clen FROM chunks c JOIN packs p ON p.id = c.pack WHERE c.id = ?').get(id)
      loc = { pack: c?.pack as string, offset: Number(c?.offset), clen: Number(c?.clen), id: Buffer.from(id).toString('hex') }
    } finally {
      db.close()
    }
    const file = join(fleet.managerDir, 'packs', loc.pack)
    const fd = openSync(file, 'r+')
    try {
      const at = loc.offset + Math.floor(loc.clen / 2)
      const b = Buffer.alloc(1)
      readSync(fd, b, 0, 1, at)
      b[0] ^= 0x01
      writeSync(fd, b, 0, 1, at)
    } finally {
      closeSync(fd)
    }

    // the record structure is intact: the quick check passes, the re-hash does not
    const quick = await cliJsonStatus<VerifyReport>(['verify', ...sock])
    assert.equal(quick.code, 0)
    const bad = await cliJsonStatus<VerifyReport>(['verify', '--read-data', ...sock])
    assert.equal(bad.code, 1)
    assert.equal(bad.json.ok, false)
    assert.deepEqual(bad.json.problemCounts, { 'hash-mismatch': 1 })
    assert.equal(bad.json.problems[0].chunk, loc.id)
    assert.equal(bad.json.problems[0].pack, loc.pack)
    assert.deepEqual(bad.json.damaged.files.map(f => [f.endpoint, f.path, f.snapshotId, f.inSnapshots.first, f.inSnapshots.last]), [['alice', 'alice/big-alice.bin', first.id, first.id, second.id]])
    assert.deepEqual(bad.json.damaged.snapshots.map(x => x.id), [first.id, second.id])

    const human = await runCli(['verify', '--read-data', ...sock])
    assert.equal(human.code, 1)
    assert.match(human.stdout, /1 problem \(1 hash-mismatch\)/)
    assert.match(human.stdout, /damaged files \(1\)/)
    assert.match(human.stdout, /alice\s+alice\/big-alice\.bin/)
    assert.match(human.stdout, new RegExp(`damaged snapshots \\(2\\): alice: ${first.id}, ${second.id}`))
  })
})
