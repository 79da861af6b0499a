/**
 * How many writer threads a restore starts: by the CPUs the process may use, read from its
 * affinity mask (a real process pinned with taskset, as the manager is in the two-host split).
 */
import { strict as assert } from 'node:assert'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { TASKSET } from '../support/fleet.js'

const POOL = new URL('../../src/restore-writer/file-writer-pool.js', import.meta.url)

/** Writer threads a FileWriterPool started in a new process (on `cpus`, if given). */
function writersIn (cpus?: string): number {
  // the pool's worker list is private to TypeScript only; the child reads it as plain JS
  const code = `import(${JSON.stringify(POOL.href)}).then(async m => { const p = new m.FileWriterPool(); console.log(p.workers.length); await p.terminate() })`
  const argv = [process.execPath, '--input-type=module', '-e', code]
  const out = cpus === undefined ? execFileSync(argv[0], argv.slice(1), { timeout: 30_000 }) : execFileSync(TASKSET, ['-c', cpus, ...argv], { timeout: 30_000 })
  return Number(out.toString().trim())
}

describe('unit: restore writer threads follow the CPUs the process may use', function () {
  this.timeout(60_000)

  it('one writer when the process is pinned to one CPU (taskset)', function () {
    if (!existsSync(TASKSET)) this.skip() // no taskset on this machine: the pinning cannot be made
    assert.ok(existsSync(fileURLToPath(POOL)))
    assert.equal(writersIn('0'), 1)
  })

  it('two to four writers when the process may use more CPUs', function () {
    const n = writersIn()
    if (availableParallelism() === 1) assert.equal(n, 1)
    else assert.equal(n, Math.min(4, availableParallelism()))
  })
})
