/**
 * The agent's staging pipeline in one process, on real files, real SQLite and real worker
 * threads, with an injected clock (no sleeps): settle, office locks, ignore globs, torn
 * reads, the spool cap, point-in-time copies, and catching up after a restart.
 */
import { strict as assert } from 'node:assert'
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import { AgentStateDb } from '../../src/staging/state-db.js'
import { Spool } from '../../src/staging/spool.js'
import { Stager } from '../../src/staging/stager.js'
import { decompressChunk } from '../../src/codec/chunk-codec.js'
import { CHUNK_ID_BYTES, type StagedEntry } from '../../src/model/entry.js'
import { seededBytes } from '../support/trees.js'

const MiB = 1024 * 1024

interface Rig { root: string, folder: string, state: AgentStateDb, spool: Spool, clock: ManualClock, stager: Stager }

function rig (options: { settleMs?: number, spoolCapBytes?: number, ignore?: string[], root?: string, clock?: ManualClock, maxSetEntries?: number } = {}): Rig {
  const root = options.root ?? mkdtempSync(join(tmpdir(), 'holdfast-staging-'))
  const folder = join(root, 'docs')
  mkdirSync(folder, { recursive: true })
  mkdirSync(join(root, 'data'), { recursive: true })
  const state = new AgentStateDb(join(root, 'data', 'agent.db'))
  const spool = new Spool(join(root, 'data', 'spool'), state)
  const clock = options.clock ?? new ManualClock(Date.now())
  const stager = new Stager({
    folders: [{ path: folder, name: 'docs', ignore: options.ignore ?? [] }],
    state,
    spool,
    clock,
    log: silentLogger,
    settleMs: options.settleMs ?? 0,
    workers: 1,
    spoolCapBytes: options.spoolCapBytes ?? 1024 * MiB,
    maxSetEntries: options.maxSetEntries
  })
  return { root, folder, state, spool, clock, stager }
}

/** A staging round with the injected clock brought up to the files' real mtimes. */
async function stageNow (r: Rig): ReturnType<Stager['stageRound']> {
  await r.clock.advance(Math.max(0, Date.now() - r.clock.now() + 1))
  return await r.stager.stageRound()
}

function close (r: Rig): void {
  r.spool.closeAll()
  r.state.close()
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

describe('integration: agent staging', function () {
  const rigs: Rig[] = []
  const make = (o?: Parameters<typeof rig>[0]): Rig => { const r = rig(o); rigs.push(r); return r }
  afterEach(() => {
    for (const r of rigs.splice(0)) {
      try { close(r) } catch {}
      rmSync(r.root, { recursive: true, force: true })
    }
  })

  it('leaves a file that changed within the settle time for later, then stages it (injected clock)', async () => {
    const r = make({ settleMs: 5000 })
    writeFileSync(join(r.folder, 'fresh.txt'), 'just saved')
    const first = await r.stager.stageRound()
    assert.equal(first.set, undefined)
    assert.equal(first.settling, 1)
    assert.ok(first.settledAt !== undefined && first.settledAt > r.clock.now())
    await r.clock.advance(5001)
    const second = await r.stager.stageRound()
    assert.ok(second.set !== undefined)
    assert.deepEqual(entryNames(r, second.set.id), ['fresh.txt'])
  })

  it('waits while an office lock file says a document is open, stages it when the lock goes, never stages locks', async () => {
    const r = make()
    writeFileSync(join(r.folder, 'report.docx'), 'draft 1')
    writeFileSync(join(r.folder, '~$report.docx'), 'owner')
    writeFileSync(join(r.folder, 'quarterly-numbers.xlsx'), 'sheet')
    writeFileSync(join(r.folder, '~$arterly-numbers.xlsx'), 'owner') // Word truncates long names
    writeFileSync(join(r.folder, 'letter.odt'), 'odt')
    writeFileSync(join(r.folder, '.~lock.letter.odt#'), 'lo lock')
    writeFileSync(join(r.folder, 'free.txt'), 'not open anywhere')
    const first = await stageNow(r)
    assert.equal(first.locked, 3)
    assert.ok(first.set !== undefined)
    assert.deepEqual(entryNames(r, first.set.id), ['free.txt'])
    writeFileSync(join(r.folder, 'report.docx'), 'final version')
    unlinkSync(join(r.folder, '~$report.docx'))
    unlinkSync(join(r.folder, '~$arterly-numbers.xlsx'))
    unlinkSync(join(r.folder, '.~lock.letter.odt#'))
    const second = await stageNow(r)
    assert.equal(second.locked, 0)
    assert.ok(second.set !== undefined)
    assert.deepEqual(entryNames(r, second.set.id), ['letter.odt', 'quarterly-numbers.xlsx', 'report.docx'])
    const report = [...r.state.setEntries(second.set.id)].find(e => Buffer.from(e.path).toString() === 'report.docx')
    assert.ok(report !== undefined)
    assert.equal((await contentOf(r, report)).toString(), 'final version')
  })

  it('never stages what the folder\'s ignore globs name', async () => {
    const r = make({ ignore: ['*.tmp', 'build/**', '/cache', 'logs/*.log'] })
    for (const p of ['a.tmp', 'keep.txt', 'build/out/x.o', 'cache/c1', 'logs/app.log', 'logs/keep.txt', 'sub/b.tmp', 'notes.swp']) {
      mkdirSync(join(r.folder, p, '..'), { recursive: true })
      writeFileSync(join(r.folder, p), p)
    }
    const round = await stageNow(r)
    assert.ok(round.set !== undefined)
    const files = [...r.state.setEntries(round.set.id)].filter(e => e.type === 'file').map(e => Buffer.from(e.path).toString()).sort()
    assert.deepEqual(files, ['keep.txt', 'logs/keep.txt'])
  })

  it('stages a point-in-time copy: later edits do not change what was staged', async () => {
    const r = make()
    const original = seededBytes('pit', 3 * MiB)
    writeFileSync(join(r.folder, 'big.bin'), original)
    const round = await stageNow(r)
    assert.ok(round.set !== undefined)
    writeFileSync(join(r.folder, 'big.bin'), seededBytes('pit-edited', 3 * MiB))
    const entry = [...r.state.setEntries(round.set.id)][0]
    assert.ok((await contentOf(r, entry)).equals(original))
  })

  it('refuses a copy torn by a concurrent writer, and stages the file once it is still', async function () {
    this.timeout(60_000)
    const r = make()
    const file = join(r.folder, 'growing.log')
    writeFileSync(file, seededBytes('torn', 32 * MiB))
    // A separate process appends continuously while we stage.
    const writer = spawn(process.execPath, ['-e', `const fs=require('fs');const b=Buffer.alloc(4096,65);const end=Date.now()+20000;(function w(){fs.appendFileSync(${JSON.stringify(file)},b);if(Date.now()<end)setTimeout(w,2)})()`], { stdio: 'ignore' })
    try {
      let torn = 0
      for (let i = 0; i < 5 && torn === 0; i++) {
        const round = await stageNow(r)
        torn += round.torn
        if (round.set !== undefined) {
          // if a round did get a copy, it must be a consistent one: a prefix of the file as it grew
          const e = [...r.state.setEntries(round.set.id)][0]
          const staged = await contentOf(r, e)
          assert.equal(staged.length, e.size)
        }
      }
      assert.ok(torn > 0, 'a file being appended to is detected as torn')
    } finally {
      writer.kill('SIGKILL')
      await new Promise(resolve => writer.once('exit', resolve))
    }
    appendFileSync(file, 'the end')
    const still = await stageNow(r)
    assert.equal(still.torn, 0)
    assert.ok(still.set !== undefined, JSON.stringify(still))
    const e = [...r.state.setEntries(still.set.id)][0]
    assert.equal(e.size, statSync(file).size)
  })

  it('holds the spool cap: staging stops before it, and goes on once a set is acknowledged', async () => {
    const cap = 3 * MiB + 512 * 1024
    const r = make({ spoolCapBytes: cap })
    for (let i = 0; i < 6; i++) writeFileSync(join(r.folder, `f${i}.bin`), seededBytes(`cap-${i}`, MiB))
    const sets: number[] = []
    let rounds = 0
    let sawFull = false
    while (rounds++ < 10) {
      const round = await stageNow(r)
      assert.ok(r.state.spoolBytes() <= cap, `spool ${r.state.spoolBytes()} over cap ${cap}`)
      const segBytes = readdirSync(r.spool.dir).reduce((n, f) => n + statSync(join(r.spool.dir, f)).size, 0)
      assert.ok(segBytes <= cap, `spool files ${segBytes} over cap`)
      sawFull ||= round.spoolFull
      if (round.set === undefined) break
      sets.push(round.set.id)
      // the manager pulls and acks: space comes back
      r.spool.remove(r.state.acknowledge(round.set.id, round.set.id, r.clock.now()))
    }
    assert.ok(sawFull, 'the cap was reached at least once')
    assert.ok(sets.length >= 2, `${sets.length} sets`)
    assert.equal(r.state.trackedCount(), 6, 'every file was staged in the end')
  })

  it('records a file larger than the cap as an error and stages the rest', async () => {
    const r = make({ spoolCapBytes: MiB })
    writeFileSync(join(r.folder, 'huge.bin'), seededBytes('huge', 2 * MiB))
    writeFileSync(join(r.folder, 'small.txt'), 'fits')
    const round = await stageNow(r)
    assert.ok(round.set !== undefined)
    assert.deepEqual(entryNames(r, round.set.id), ['small.txt'])
    assert.ok(r.state.pathErrors().some(e => e.code === 'SPOOL_TOO_SMALL' && Buffer.from(e.path).toString() === 'huge.bin'))
  })

  it('after a restart, reads nothing that did not change', async () => {
    const r = make()
    for (let i = 0; i < 50; i++) writeFileSync(join(r.folder, `n${i}.txt`), `note ${i}`)
    const first = await stageNow(r)
    assert.ok(first.set !== undefined)
    assert.equal(first.changed, 50 + 0)
    close(r)
    rigs.pop()
    const again = rig({ root: r.root, clock: r.clock })
    rigs.push(again)
    writeFileSync(join(again.folder, 'n7.txt'), 'changed while the agent was down')
    const round = await stageNow(again)
    assert.ok(round.set !== undefined)
    assert.deepEqual(entryNames(again, round.set.id), ['n7.txt'])
    const idle = await stageNow(again)
    assert.equal(idle.set, undefined, 'nothing changed, nothing staged')
    assert.equal(idle.scanned, 50)
  })

  it('seals a large round as several bounded sets, each whole', async () => {
    const r = make({ maxSetEntries: 100 })
    for (let d = 0; d < 5; d++) {
      mkdirSync(join(r.folder, `d${d}`))
      for (let i = 0; i < 70; i++) writeFileSync(join(r.folder, `d${d}`, `f${i}.txt`), `${d}/${i}`)
    }
    const round = await stageNow(r)
    assert.ok(round.sets.length >= 3, `${round.sets.length} sets`)
    assert.equal(round.sets.reduce((n, s) => n + s.entries, 0), 5 + 5 * 70)
    for (const s of round.sets) assert.ok(s.entries <= 100 + 71, `set ${s.id} has ${s.entries} entries`)
    assert.deepEqual(r.state.sealedSets().map(s => s.id), round.sets.map(s => s.id))
    assert.equal(r.state.trackedCount(), 5 + 5 * 70)
  })

  it('holds the rows of the sets being filled and sealed compactly: a few hundred bytes an entry (issue 12 item 8)', async () => {
    const r = make({ maxSetEntries: 200 })
    for (let d = 0; d < 5; d++) {
      mkdirSync(join(r.folder, `d${d}`))
      for (let i = 0; i < 200; i++) writeFileSync(join(r.folder, `d${d}`, `f${i}.txt`), `${d}/${i}`)
    }
    const round = await stageNow(r)
    assert.ok(round.sets.length >= 4, `${round.sets.length} sets`)
    assert.equal(round.changed, 5 + 5 * 200)
    // at most two sets held at once (one sealing, one filling), each ≤ 200 + 201 entries; as
    // objects an entry took ~1.1 KiB of heap, as bytes ~200 (blocks round it up at most 2×)
    assert.ok(round.peakRowBytes > 200 * 100, `${round.peakRowBytes} bytes: rows not counted`)
    assert.ok(round.peakRowBytes <= 2 * 401 * 512, `${round.peakRowBytes} bytes held for two sets of ≤ 401 entries`)
  })

  it('stages every set of a round with one pool of workers, each set in segments of its own (issue 12)', async () => {
    const r = make({ maxSetEntries: 100 })
    for (let d = 0; d < 5; d++) {
      mkdirSync(join(r.folder, `d${d}`))
      for (let i = 0; i < 70; i++) writeFileSync(join(r.folder, `d${d}`, `f${i}.txt`), `${d}/${i} `.repeat(1 + i * 37))
    }
    // 'worker' is emitted on this process for every worker thread it starts
    let started = 0
    const onWorker = (): void => { started++ }
    process.on('worker', onWorker)
    let round
    try {
      round = await stageNow(r)
    } finally {
      process.off('worker', onWorker)
    }
    assert.ok(round.sets.length >= 3, `${round.sets.length} sets`)
    assert.equal(started, 1, 'the rig asks for one staging worker: one for the whole round, not one per set')
    assert.deepEqual(r.state.sealedSets().map(s => s.id), round.sets.map(s => s.id))
    let files = 0
    for (const set of round.sets) {
      for (const e of r.state.setEntries(set.id)) {
        if (e.type !== 'file') continue
        files++
        const name = Buffer.from(e.path).toString()
        const [d, i] = /^d(\d)\/f(\d+)\.txt$/.exec(name)?.slice(1).map(Number) ?? [NaN, NaN]
        assert.deepEqual(await contentOf(r, e), Buffer.from(`${d}/${i} `.repeat(1 + i * 37)), `${name} byte for byte`)
        for (let k = 0; k < e.chunks.byteLength; k += CHUNK_ID_BYTES) {
          // acking a set deletes its segments: none of its chunks may sit in another set's
          assert.match(r.state.spoolLocation(e.chunks.subarray(k, k + CHUNK_ID_BYTES))?.segment ?? '', new RegExp(`^set-${set.id}-`), `${name} is spooled in its own set's segment`)
        }
      }
    }
    assert.equal(files, 5 * 70)
    assert.deepEqual([...r.spool.segmentsPresent()].filter(s => !round.sets.some(set => s.startsWith(`set-${set.id}-`))), [], 'no segment of an unsealed set is left')
  })

  it('records every path under a deleted directory, and under a directory replaced by a file', async () => {
    const r = make()
    mkdirSync(join(r.folder, 'gone', 'sub'), { recursive: true })
    writeFileSync(join(r.folder, 'gone', 'a'), 'a')
    writeFileSync(join(r.folder, 'gone', 'sub', 'b'), 'b')
    mkdirSync(join(r.folder, 'was-dir'))
    writeFileSync(join(r.folder, 'was-dir', 'c'), 'c')
    writeFileSync(join(r.folder, 'gonexyz'), 'a sibling whose name starts the same')
    assert.ok((await stageNow(r)).set !== undefined)
    rmSync(join(r.folder, 'gone'), { recursive: true })
    rmSync(join(r.folder, 'was-dir'), { recursive: true })
    writeFileSync(join(r.folder, 'was-dir'), 'now a file')
    const round = await stageNow(r)
    assert.ok(round.set !== undefined)
    const entries = [...r.state.setEntries(round.set.id)].map(e => `${e.type} ${Buffer.from(e.path).toString()}`).sort()
    assert.deepEqual(entries, ['deleted gone', 'deleted gone/a', 'deleted gone/sub', 'deleted gone/sub/b', 'deleted was-dir/c', 'file was-dir'])
    assert.equal(r.state.trackedCount(), 2)
  })
})
