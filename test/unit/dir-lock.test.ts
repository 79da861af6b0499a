import { strict as assert } from 'node:assert'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { lockDataDir, PID_FILE } from '../../src/util/dir-lock.js'
import { holdfastCode } from './helpers.js'

const LOCK_MODULE = new URL('../../src/util/dir-lock.js', import.meta.url).href

/** A child process that takes the lock on `dir`, says so, and holds it until killed (at most 60 s). */
async function holder (dir: string): Promise<ChildProcess> {
  const script = `import { lockDataDir } from ${JSON.stringify(LOCK_MODULE)}
const lock = lockDataDir(${JSON.stringify(dir)}); process.stdout.write('locked\\n')
setTimeout(() => { lock.release(); process.exit(0) }, 60_000)`
  const child = spawn(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('holder did not take the lock within 20 s')) }, 20_000)
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { if (d.includes('locked')) { clearTimeout(timer); resolve() } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`holder exited ${String(code)} before taking the lock`)) })
  })
  return child
}

/** Another process's attempt: what it got ({ok} or the error's code and pid). */
function contend (dir: string): { ok: boolean, code?: string, pid?: number, message?: string } {
  const script = `import { lockDataDir } from ${JSON.stringify(LOCK_MODULE)}
try { lockDataDir(${JSON.stringify(dir)}).release(); process.stdout.write(JSON.stringify({ ok: true })) }
catch (err) { process.stdout.write(JSON.stringify({ ok: false, code: err.code, pid: err.details?.pid, message: err.message })) }`
  const r = spawnSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 })
  assert.equal(r.status, 0, `contender failed: ${r.stderr}`)
  return JSON.parse(r.stdout) as { ok: boolean, code?: string, pid?: number, message?: string }
}

async function kill9 (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  child.kill('SIGKILL')
  await exited
}

describe('data directory lock', () => {
  let root: string
  let n = 0
  const children: ChildProcess[] = []
  const freshDir = (): string => join(root, `dir-${n++}`)

  before(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-dir-lock-')) })
  afterEach(async () => { await Promise.all(children.splice(0).map(kill9)) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  it('refuses a second process with DATA_DIR_LOCKED naming the holder, and frees the directory when the holder is killed -9', async () => {
    const dir = freshDir()
    const first = await holder(dir)
    children.push(first)
    assert.equal(readFileSync(join(dir, PID_FILE), 'utf8').trim(), String(first.pid), 'the holder wrote its pid')
    const refused = contend(dir)
    assert.equal(refused.ok, false, 'a second process must not get the lock')
    assert.equal(refused.code, 'DATA_DIR_LOCKED')
    assert.equal(refused.pid, first.pid)
    assert.ok(refused.message?.includes(`pid ${String(first.pid)}`), refused.message)
    assert.equal(first.exitCode, null, 'the holder is unharmed')

    await kill9(first)
    // The kernel dropped the lock with the process: no stale lock file to clean up by hand.
    const second = await holder(dir)
    children.push(second)
    assert.equal(readFileSync(join(dir, PID_FILE), 'utf8').trim(), String(second.pid))
    assert.equal(contend(dir).code, 'DATA_DIR_LOCKED')
  })

  it('refuses a second lock in the same process and in another thread (the daemon runs in a worker)', async () => {
    const dir = freshDir()
    const lock = lockDataDir(dir)
    try {
      assert.throws(() => lockDataDir(dir), holdfastCode('DATA_DIR_LOCKED', `pid ${process.pid}`))
      const worker = new Worker(`import(${JSON.stringify(LOCK_MODULE)}).then(m => {
        try { m.lockDataDir(${JSON.stringify(dir)}); require('node:worker_threads').parentPort.postMessage('locked') }
        catch (err) { require('node:worker_threads').parentPort.postMessage(err.code) } })`, { eval: true })
      const got = await new Promise<unknown>((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject) })
      await worker.terminate()
      assert.equal(got, 'DATA_DIR_LOCKED')
    } finally {
      lock.release()
    }
    const again = lockDataDir(dir)
    again.release()
    again.release()
    assert.equal(contend(dir).ok, true, 'released: another process may take it')
  })
})
