/**
 * Hostile content at the restore writer (docs/security.md), with real files and a real racing
 * process: a parent directory swapped for a symlink to outside during a restore never gets a
 * file or directory written outside the target; setuid/setgid bits are dropped unless asked
 * (and counted); a target of another user is refused.
 */
import { strict as assert } from 'node:assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RestoreSink, prepareTarget } from '../../src/restore-writer/restore-sink.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import type { StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'

const MTIME = 1_700_000_000_000_000_000n
const CONTENT = Buffer.from('restored bytes that must never land outside the target\n')

function fileEntry (path: string, mode = 0o100644): StagedEntry {
  return { folder: 'home', path: Buffer.from(path), type: 'file', mode, mtimeNs: MTIME, size: CONTENT.byteLength, chunks: chunkId(CONTENT) }
}

const provide = async (): Promise<Uint8Array> => CONTENT
const STORED = compressChunk(CONTENT)

/** Every name under `dir`, recursively (lstat: links are not followed). */
function listAll (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    out.push(p)
    if (lstatSync(p).isDirectory()) out.push(...listAll(p))
  }
  return out
}

describe('integration: the restore writer against hostile content', function () {
  this.timeout(120_000)
  let root: string
  let racer: ChildProcess | undefined

  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-restore-hostile-')) })
  afterEach(async () => {
    if (racer !== undefined && racer.exitCode === null && racer.signalCode === null) {
      const exited = new Promise<void>(resolve => { racer?.once('exit', () => { resolve() }) })
      racer.kill('SIGKILL')
      await exited
    }
    racer = undefined
    rmSync(root, { recursive: true, force: true })
  })

  // Both writers: add() (the agent's, files written on the main thread) and addStored() (the
  // manager's, files written by worker threads through /proc/self/fd/N/<name>).
  for (const writer of ['add', 'addStored'] as const) {
  it(`a parent swapped for a symlink to outside during the restore (a racing process): nothing is written outside (${writer})`, async () => {
    const outside = join(root, 'outside')
    mkdirSync(outside)
    const stop = join(root, 'stop')
    // Swaps target/<n>/home/sub for a symlink to `outside` and back, as fast as it can, for
    // every round's target in turn; bounded by a count and a deadline.
    const code = `
      const fs = require('node:fs'); const path = require('node:path')
      const root = process.env.ROOT, outside = process.env.OUTSIDE, stop = process.env.STOP
      const until = Date.now() + 60000
      process.stdout.write('ready\\n')
      for (let i = 0; i < 5000000 && Date.now() < until && !fs.existsSync(stop); i++) {
        const sub = path.join(root, 't' + fs.readFileSync(path.join(root, 'round'), 'utf8'), 'home', 'sub')
        try { fs.renameSync(sub, sub + '.real'); fs.symlinkSync(outside, sub) } catch {}
        try { fs.unlinkSync(sub); fs.renameSync(sub + '.real', sub) } catch {}
      }`
    writeFileSync(join(root, 'round'), '0')
    racer = spawn(process.execPath, ['-e', code], { env: { ...process.env, ROOT: root, OUTSIDE: outside, STOP: stop }, stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('racer did not start within 20 s')) }, 20_000)
      racer?.stdout?.once('data', () => { clearTimeout(timer); resolve() })
    })
    let unsafe = 0
    let written = 0
    const rounds = 40
    for (let r = 0; r < rounds; r++) {
      const target = join(root, `t${r}`)
      mkdirSync(join(target, 'home', 'sub'), { recursive: true })
      writeFileSync(join(root, 'round'), String(r))
      const sink = new RestoreSink({ target })
      for (let i = 0; i < 200; i++) {
        if (writer === 'add') await sink.add(fileEntry(`sub/f${i}`), provide)
        else await sink.addStored(fileEntry(`sub/f${i}`), () => ({ rawLength: CONTENT.length, compressed: STORED }))
        await sink.add({ folder: 'home', path: Buffer.from(`sub/d${i}`), type: 'dir', mode: 0o40755, mtimeNs: MTIME, size: 0, chunks: new Uint8Array(0) }, provide)
      }
      await sink.drain()
      const summary = sink.finish()
      unsafe += summary.errors.filter(e => e.code === 'RESTORE_PATH_UNSAFE').length
      written += summary.files
      assert.deepEqual(readdirSync(outside), [], `round ${r}: something was written outside the target`)
    }
    writeFileSync(stop, '')
    assert.deepEqual(listAll(outside), [], 'nothing outside the target')
    // the race really ran: some files were written, and some creates were caught going astray
    assert.ok(written > 0, 'the restore wrote files')
    process.stdout.write(`      (${written} files written, ${unsafe} creates refused as RESTORE_PATH_UNSAFE)\n`)
  })
  }

  // Another directory put where the restore made one (not a link: the same path then names a
  // real directory) is not the restore's: nothing is written into it, for either writer.
  for (const writer of ['add', 'addStored'] as const) {
  it(`a directory of the restore replaced by another directory: nothing is written into the impostor (${writer})`, async () => {
    const target = join(root, 'target')
    prepareTarget(target)
    const sink = new RestoreSink({ target })
    const put = async (path: string): Promise<void> => {
      if (writer === 'add') await sink.add(fileEntry(path), provide)
      else await sink.addStored(fileEntry(path), () => ({ rawLength: CONTENT.length, compressed: STORED }))
    }
    await put('sub/a')
    await put('other/a')
    await sink.drain()
    // 'sub' moved aside and a new directory made in its place, between two entries
    renameSync(join(target, 'home', 'sub'), join(target, 'home', 'sub.moved'))
    mkdirSync(join(target, 'home', 'sub'))
    await put('sub/b')
    await put('sub/deeper/c')
    await sink.drain()
    const summary = sink.finish()
    assert.deepEqual(readdirSync(join(target, 'home', 'sub')), [], 'nothing written into the directory put in place of the restore\'s')
    assert.ok(summary.errors.length > 0 || existsSync(join(target, 'home', 'sub.moved', 'b')), 'sub/b was refused or written into the restore\'s own directory')
  })
  }

  it('drops setuid/setgid bits by default and counts them; keeps them with keepSetuid', async () => {
    const entries: StagedEntry[] = [
      fileEntry('tool', 0o104755),
      fileEntry('group-tool', 0o102755),
      fileEntry('sticky-plain', 0o101644),
      { folder: 'home', path: Buffer.from('shared'), type: 'dir', mode: 0o42775, mtimeNs: MTIME, size: 0, chunks: new Uint8Array(0) }
    ]
    const plain = join(root, 'plain')
    prepareTarget(plain)
    const sink = new RestoreSink({ target: plain })
    for (const e of entries) await sink.add(e, provide)
    const summary = sink.finish()
    assert.equal(summary.setuidStripped, 3)
    assert.equal(statSync(join(plain, 'home', 'tool')).mode & 0o7777, 0o755)
    assert.equal(statSync(join(plain, 'home', 'group-tool')).mode & 0o7777, 0o755)
    assert.equal(statSync(join(plain, 'home', 'sticky-plain')).mode & 0o7777, 0o1644, 'the sticky bit is not setuid: kept')
    assert.equal(statSync(join(plain, 'home', 'shared')).mode & 0o7777, 0o775)

    const kept = join(root, 'kept')
    prepareTarget(kept)
    const keeping = new RestoreSink({ target: kept, keepSetuid: true })
    for (const e of entries) await keeping.add(e, provide)
    assert.equal(keeping.finish().setuidStripped, 0)
    assert.equal(statSync(join(kept, 'home', 'tool')).mode & 0o7777, 0o4755)
    assert.equal(statSync(join(kept, 'home', 'group-tool')).mode & 0o7777, 0o2755)
  })

  it('refuses a target directory of another user (RESTORE_TARGET_NOT_OWNED), writing nothing', () => {
    const target = join(root, 'someone-else')
    mkdirSync(target)
    const owner = statSync(target).uid
    // the restoring process's uid is another than the directory's (a test cannot make a
    // directory of a second user inside its one-uid user namespace, so the uid is given)
    let err: unknown
    try { prepareTarget(target, owner + 1000) } catch (e) { err = e }
    assert.ok(err instanceof HoldfastError && err.code === 'RESTORE_TARGET_NOT_OWNED', String(err))
    assert.deepEqual(readdirSync(target), [])
    prepareTarget(target, owner)
    assert.ok(existsSync(target))
  })
})
