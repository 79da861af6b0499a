import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import fs, { chmodSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { writeFileDurable } from '../../src/util/durable-file.js'

const MODULE = new URL('../../src/util/durable-file.js', import.meta.url).href
const KiB = 1024

/** Two contents a reader can tell apart, each checkable as whole: every byte the same letter. */
const contentA = Buffer.alloc(512 * KiB, 'a')
const contentB = Buffer.alloc(700 * KiB, 'b')
function whole (bytes: Buffer): 'a' | 'b' | undefined {
  if (bytes.equals(contentA)) return 'a'
  if (bytes.equals(contentB)) return 'b'
  return undefined
}

describe('writeFileDurable', () => {
  let root: string
  let n = 0
  const freshDir = (): string => {
    const dir = join(root, `d-${n++}`)
    fs.mkdirSync(dir)
    return dir
  }

  before(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-durable-')) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  it('writes the bytes with exactly the mode asked for and leaves no temporary file', () => {
    const dir = freshDir()
    const file = join(dir, 'f')
    const old = process.umask(0o077)
    try {
      writeFileDurable(file, 'hello\n', 0o640)
    } finally {
      process.umask(old)
    }
    assert.equal(readFileSync(file, 'utf8'), 'hello\n')
    assert.equal(statSync(file).mode & 0o777, 0o640, 'not filtered by the umask')
    writeFileSync(join(dir, 'g'), 'loose')
    chmodSync(join(dir, 'g'), 0o666)
    writeFileDurable(join(dir, 'g'), Buffer.from('tight'), 0o600)
    assert.equal(statSync(join(dir, 'g')).mode & 0o777, 0o600, 'an existing file\'s mode is replaced, not kept')
    assert.deepEqual(readdirSync(dir).sort(), ['f', 'g'])
  })

  it('leaves no temporary file and the old file when the write fails', () => {
    const dir = freshDir()
    const file = join(dir, 'f')
    writeFileSync(file, 'old')
    // a directory where the file should go: the rename fails after the temp file is written
    const blocked = join(dir, 'blocked')
    fs.mkdirSync(join(blocked, 'x'), { recursive: true })
    assert.throws(() => { writeFileDurable(blocked, 'new', 0o600) })
    assert.deepEqual(readdirSync(dir).sort(), ['blocked', 'f'])
    assert.equal(readFileSync(file, 'utf8'), 'old')
  })

  it('is not blocked by a temporary file a killed process left under the same pid', () => {
    const dir = freshDir()
    const file = join(dir, 'f')
    writeFileSync(`${file}.tmp-${process.pid}`, 'left by a process killed mid-write')
    writeFileDurable(file, 'new', 0o600)
    assert.equal(readFileSync(file, 'utf8'), 'new')
  })

  it('fsyncs the file before the rename and the directory after it', () => {
    const dir = freshDir()
    const file = join(dir, 'f')
    const synced: string[] = []
    const real = fs.fsyncSync
    // Spy on the syscall (there is no strace here): the ESM binding follows the CJS export.
    fs.fsyncSync = (fd: number): void => {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`)
      synced.push(target === dir ? 'dir' : fs.existsSync(file) ? 'after-rename' : 'file')
      real(fd)
    }
    syncBuiltinESMExports()
    try {
      writeFileDurable(file, 'x', 0o600)
    } finally {
      fs.fsyncSync = real
      syncBuiltinESMExports()
    }
    assert.deepEqual(synced, ['file', 'dir'])
  })

  it('replaces a file atomically: a reader sees the old file or the new one, whole, also across kill -9', async function () {
    this.timeout(120_000)
    const dir = freshDir()
    const file = join(dir, 'f')
    writeFileDurable(file, contentA, 0o600)
    // A reader with the old file open keeps reading the old bytes whole.
    const fd = openSync(file, 'r')
    writeFileDurable(file, contentB, 0o600)
    const buf = Buffer.alloc(contentA.length + 1)
    const got = readSync(fd, buf, 0, buf.length, 0)
    closeSync(fd)
    assert.equal(whole(buf.subarray(0, got)), 'a', 'an open reader of the old file must not see it change')

    // A child rewrites the file in a loop, alternating the two contents; we read it all the
    // while, then kill -9 the writer at several points of its loop.
    const script = `import { writeFileDurable } from ${JSON.stringify(MODULE)}
const a = Buffer.alloc(${contentA.length}, 'a'); const b = Buffer.alloc(${contentB.length}, 'b')
process.stdout.write('go\\n')
for (let i = 0; i < 100_000; i++) writeFileDurable(${JSON.stringify(file)}, i % 2 === 0 ? b : a, 0o600)`
    let reads = 0
    for (let round = 0; round < 5; round++) {
      const child = spawn(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
      const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.once('data', () => { resolve() })
          child.once('exit', code => { reject(new Error(`writer exited ${String(code)} before it began`)) })
        })
        const until = Date.now() + 150 + round * 100
        while (Date.now() < until) {
          assert.ok(whole(readFileSync(file)) !== undefined, 'a reader saw a partial file')
          reads++
          await delay(0)
        }
      } finally {
        child.kill('SIGKILL')
        await exited
      }
      assert.ok(whole(readFileSync(file)) !== undefined, `after kill -9 in round ${round} the file is neither old nor new, whole`)
    }
    assert.ok(reads > 10, `the reader read ${reads} times`)
  })
})
