/**
 * Issue 8, the agent's side: files whose mtime lies (settle by what the agent observed),
 * a chunk shared by two sets (it lives while any unacked set holds it; a set that lost one
 * is re-staged), and a disk close to full (staging stops at a reserve and resumes).
 * Real files, real SQLite, real worker threads; time is an injected clock (no sleeps).
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import { AgentStateDb } from '../../src/staging/state-db.js'
import { Spool } from '../../src/staging/spool.js'
import { Stager, type StagerInit } from '../../src/staging/stager.js'
import { decompressChunk } from '../../src/codec/chunk-codec.js'
import { CHUNK_ID_BYTES, type StagedEntry } from '../../src/model/entry.js'
import { restageBrokenSets } from '../../src/staging/repair.js'
import { seededBytes } from '../support/trees.js'

const MiB = 1024 * 1024

interface Rig { root: string, folder: string, state: AgentStateDb, spool: Spool, clock: ManualClock, stager: Stager }

function rig (options: { settleMs?: number, clock?: ManualClock, extra?: Partial<StagerInit> } = {}): Rig {
  const root = mkdtempSync(join(tmpdir(), 'holdfast-staging-faults-'))
  const folder = join(root, 'docs')
  mkdirSync(folder, { recursive: true })
  mkdirSync(join(root, 'data'), { recursive: true })
  const state = new AgentStateDb(join(root, 'data', 'agent.db'))
  const spool = new Spool(join(root, 'data', 'spool'), state)
  const clock = options.clock ?? new ManualClock(Date.now())
  const stager = new Stager({
    folders: [{ path: folder, name: 'docs', ignore: [] }],
    state,
    spool,
    clock,
    log: silentLogger,
    settleMs: options.settleMs ?? 0,
    workers: 1,
    spoolCapBytes: 1024 * MiB,
    ...options.extra
  })
  return { root, folder, state, spool, clock, stager }
}

/** A staging round with the injected clock brought up to the files' real times. */
async function stageNow (r: Rig): ReturnType<Stager['stageRound']> {
  await r.clock.advance(Math.max(0, Date.now() - r.clock.now() + 1))
  return await r.stager.stageRound()
}

function entryNames (r: Rig, setId: number): string[] {
  return [...r.state.setEntries(setId)].map(e => Buffer.from(e.path).toString()).sort()
}

async function contentOf (r: Rig, e: StagedEntry): Promise<Buffer> {
  const parts: Buffer[] = []
  for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
    const c = await r.spool.readChunk(e.chunks.subarray(i, i + CHUNK_ID_BYTES))
    assert.ok(c !== null, 'chunk is in the spool')
    parts.push(decompressChunk(c.compressed, c.rawLength))
  }
  return Buffer.concat(parts)
}

describe('integration: agent staging faults (issue 8)', function () {
  const rigs: Rig[] = []
  const make = (o?: Parameters<typeof rig>[0]): Rig => { const r = rig(o); rigs.push(r); return r }
  afterEach(() => {
    for (const r of rigs.splice(0)) {
      try { r.spool.closeAll(); r.state.close() } catch {}
      rmSync(r.root, { recursive: true, force: true })
    }
  })

  describe('settling never trusts mtime', () => {
    it('stages files stamped 1970, 2100 and the far future once the agent has seen them unchanged for settleMs', async () => {
      const r = make({ settleMs: 5000 })
      const stamps: Record<string, number> = {
        'epoch.txt': 0,
        'y2100.txt': Date.UTC(2100, 0, 1) / 1000,
        'far.txt': Date.UTC(2400, 0, 1) / 1000
      }
      for (const [name, secs] of Object.entries(stamps)) {
        writeFileSync(join(r.folder, name), `stamped ${name}`)
        utimesSync(join(r.folder, name), secs, secs)
      }
      assert.ok(statSync(join(r.folder, 'far.txt')).mtimeMs > Date.UTC(2300, 0, 1), 'the file system kept the far-future mtime')
      const first = await stageNow(r)
      assert.equal(first.set, undefined, 'just written: still settling')
      assert.equal(first.settling, 3)
      assert.ok(first.settledAt !== undefined && first.settledAt <= r.clock.now() + 5000, `settles within settleMs, not at the mtime (${first.settledAt})`)
      await r.clock.advance(5001)
      const second = await r.stager.stageRound()
      assert.ok(second.set !== undefined, `staged after settleMs: ${JSON.stringify(second)}`)
      assert.deepEqual(entryNames(r, second.set.id), ['epoch.txt', 'far.txt', 'y2100.txt'])
      for (const e of r.state.setEntries(second.set.id)) {
        const name = Buffer.from(e.path).toString()
        assert.equal((await contentOf(r, e)).toString(), `stamped ${name}`)
      }
      assert.equal(second.settling, 0)
    })

    it('settles on the agent\'s own clock when ctime is in the future (system clock set back), and restarts the wait on each change', async () => {
      // the agent's clock is an hour behind the time the kernel stamps ctime with
      const r = make({ settleMs: 5000, clock: new ManualClock(Date.now() - 3600_000) })
      const file = join(r.folder, 'report.txt')
      writeFileSync(file, 'v1')
      const first = await r.stager.stageRound()
      assert.equal(first.set, undefined)
      assert.equal(first.settling, 1)
      assert.ok(first.settledAt !== undefined && first.settledAt <= r.clock.now() + 5000, `settles within settleMs of the agent clock (${first.settledAt})`)
      await r.clock.advance(3000)
      writeFileSync(file, 'version 2') // changed again: the wait starts over
      const second = await r.stager.stageRound()
      assert.equal(second.set, undefined)
      await r.clock.advance(3000)
      const third = await r.stager.stageRound()
      assert.equal(third.set, undefined, 'unchanged for 3 s only')
      await r.clock.advance(2001)
      const fourth = await r.stager.stageRound()
      assert.ok(fourth.set !== undefined, JSON.stringify(fourth))
      const e = [...r.state.setEntries(fourth.set.id)][0]
      assert.equal((await contentOf(r, e)).toString(), 'version 2')
    })
  })

  describe('a chunk shared by two sets', () => {
    it('stays in the spool while the unacked set holds it, and that set is served whole (also after a restart)', async () => {
      const r = make()
      const content = seededBytes('shared', 3 * MiB)
      writeFileSync(join(r.folder, 'a.bin'), content)
      const first = await stageNow(r)
      assert.ok(first.set !== undefined)
      writeFileSync(join(r.folder, 'b.bin'), content) // same bytes under another name: same chunks
      const second = await stageNow(r)
      assert.ok(second.set !== undefined)
      assert.deepEqual(entryNames(r, second.set.id), ['b.bin'])
      // the manager acks set 1 only (and may prune those chunks on its side)
      r.spool.remove(r.state.acknowledge(first.set.id, 1, r.clock.now()))
      const b = [...r.state.setEntries(second.set.id)][0]
      assert.ok((await contentOf(r, b)).equals(content), 'set 2 is fetched whole after set 1 is acked')
      // an agent restart removes orphan segments: set 2's copy is not one
      assert.equal(r.spool.removeOrphans(), 0)
      assert.deepEqual(r.state.setsMissingChunks(r.spool.segmentsPresent()), [])
      assert.ok((await contentOf(r, b)).equals(content), 'and still after the orphan sweep')
      r.spool.remove(r.state.acknowledge(second.set.id, 2, r.clock.now()))
      assert.equal(r.state.spoolBytes(), 0)
      assert.deepEqual(readdirSync(r.spool.dir), [], 'the last ack frees the last copy')
    })

    it('re-stages from the source a set that lost a chunk from the spool, deletions included, and reports its paths until then', async () => {
      const r = make()
      writeFileSync(join(r.folder, 'keep.txt'), 'kept')
      writeFileSync(join(r.folder, 'gone.txt'), 'will be deleted')
      const base = await stageNow(r)
      assert.ok(base.set !== undefined)
      r.spool.remove(r.state.acknowledge(base.set.id, 1, r.clock.now()))
      writeFileSync(join(r.folder, 'lost.bin'), seededBytes('lost', 256 * 1024))
      unlinkSync(join(r.folder, 'gone.txt'))
      const broken = await stageNow(r)
      assert.ok(broken.set !== undefined)
      assert.deepEqual(entryNames(r, broken.set.id), ['gone.txt', 'lost.bin'])
      writeFileSync(join(r.folder, 'later.txt'), 'a later set')
      const later = await stageNow(r)
      assert.ok(later.set !== undefined)
      // the broken set's segments vanish (deleted by hand, a disk error)
      for (const seg of r.spool.segmentsOfSet(broken.set.id)) unlinkSync(join(r.spool.dir, seg))
      assert.deepEqual(r.state.setsMissingChunks(r.spool.segmentsPresent()), [broken.set.id])
      const repaired = restageBrokenSets(r.state, r.spool, silentLogger, r.clock.now())
      assert.deepEqual(repaired, { sets: [broken.set.id], paths: 2 })
      assert.deepEqual(r.state.sealedSets().map(s => s.id), [later.set.id], 'the broken set is gone, the later one stays')
      assert.deepEqual(r.state.pathErrors().filter(e => e.code === 'SET_RESTAGED').map(e => Buffer.from(e.path).toString()).sort(), ['gone.txt', 'lost.bin'])
      const again = await stageNow(r)
      assert.ok(again.set !== undefined)
      const entries = [...r.state.setEntries(again.set.id)].map(e => `${e.type} ${Buffer.from(e.path).toString()}`).sort()
      assert.deepEqual(entries, ['deleted gone.txt', 'file lost.bin'])
      const lost = [...r.state.setEntries(again.set.id)].find(e => e.type === 'file')
      assert.ok(lost !== undefined)
      assert.ok((await contentOf(r, lost)).equals(seededBytes('lost', 256 * 1024)))
      assert.deepEqual(r.state.pathErrors().filter(e => e.code === 'SET_RESTAGED'), [], 'reported until staged again')
      assert.equal(r.state.trackedCount(), 3, 'keep, later, lost: no placeholder left')
      assert.equal((await stageNow(r)).set, undefined, 'then nothing more to stage')
    })
  })

  describe('the endpoint\'s disk', () => {
    it('stops staging at the disk reserve, says so, and goes on once space comes back', async () => {
      // A 40 MiB file system holding the spool, with a 30 MiB reserve. It cannot be a real
      // tmpfs: inside the test's user + network namespace mount(2) is refused (checked:
      // "permission denied"), so free space comes from a FreeSpaceProbe whose used bytes are
      // the real spool files on disk.
      const capacity = 40 * MiB
      let others = 0 // bytes other programs hold on this disk
      const probe = {
        free: (dir: string) => {
          const used = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0)
          return { availBytes: capacity - used - others, totalBytes: capacity }
        }
      }
      const r = make({ extra: { freeSpace: probe, diskReserveBytes: 30 * MiB } })
      for (let i = 0; i < 6; i++) writeFileSync(join(r.folder, `f${i}.bin`), seededBytes(`disk-${i}`, 3 * MiB))
      const first = await stageNow(r)
      assert.ok(first.diskLow, JSON.stringify(first))
      assert.equal(first.spoolFull, false)
      assert.ok(first.deferred > 0)
      assert.ok(probe.free(r.spool.dir).availBytes >= 30 * MiB, 'the reserve was kept')
      assert.ok(first.set !== undefined, 'what fitted was staged')
      // someone else fills the disk: nothing more is staged, still reported
      others = 8 * MiB
      const blocked = await stageNow(r)
      assert.ok(blocked.diskLow)
      assert.equal(blocked.set, undefined)
      // space comes back (the other program's files go, the manager acks): staging goes on
      others = 0
      let rounds = 0
      let sets = 1
      r.spool.remove(r.state.acknowledge(first.set.id, 1, r.clock.now()))
      while (r.state.trackedCount() < 6 && rounds++ < 10) {
        const round = await stageNow(r)
        assert.ok(probe.free(r.spool.dir).availBytes >= 30 * MiB, 'the reserve is kept every round')
        if (round.set === undefined) break
        sets++
        r.spool.remove(r.state.acknowledge(round.set.id, round.set.id, r.clock.now()))
      }
      assert.equal(r.state.trackedCount(), 6, `every file staged in the end (${sets} sets)`)
      const last = await stageNow(r)
      assert.equal(last.diskLow, false)
    })
  })
})
