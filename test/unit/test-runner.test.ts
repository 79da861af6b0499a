/**
 * The test runner (scripts/run-tests.ts) as CI uses it: a focused test fails every run, and
 * in CI (any CI value but empty, 0, false) a pending or skipped test fails the run too.
 * Runs the real runner on small spec files written here (kept out of the repository, where
 * an `.only` would be a mistake).
 */
import { strict as assert } from 'node:assert'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isCi } from '../support/ci.js'
import { NETNS_ENV } from '../support/netns.js'

const RUNNER = new URL('../../scripts/run-tests.js', import.meta.url).pathname

describe('test runner', function () {
  this.timeout(60_000)
  let root: string
  const spec = (name: string, body: string): string => {
    const file = join(root, `${name}.cjs`)
    writeFileSync(file, `describe('fixture', () => {\n${body}\n})\n`)
    return file
  }
  /** The runner's exit status on `file` with CI as given (unset when undefined). */
  const run = (file: string, ci: string | undefined): number => {
    const env: NodeJS.ProcessEnv = { ...process.env, [NETNS_ENV]: '1' }
    delete env.CI
    if (ci !== undefined) env.CI = ci
    const r = spawnSync(process.execPath, [RUNNER, file], { env, encoding: 'utf8', timeout: 50_000 })
    assert.equal(r.error, undefined)
    return r.status ?? -1
  }

  before(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-runner-')) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  it('treats any CI value but empty, 0 or false as CI', () => {
    for (const v of ['true', '1', 'yes', 'github-actions', 'TRUE']) assert.equal(isCi({ CI: v }), true, `CI=${v}`)
    for (const v of [undefined, '', '0', 'false', 'False', ' ']) assert.equal(isCi({ CI: v }), false, `CI=${String(v)}`)
  })

  it('passes a clean spec, in CI or not', () => {
    const file = spec('clean', "it('works', () => {})")
    assert.equal(run(file, undefined), 0)
    assert.equal(run(file, '1'), 0)
  })

  it('fails a run with a focused test (.only), in CI or not', () => {
    const file = spec('only', "it.only('focused', () => {})\nit('hidden by the focus', () => { throw new Error('never runs') })")
    assert.notEqual(run(file, undefined), 0)
    assert.notEqual(run(file, 'true'), 0)
  })

  it('fails a run with a pending or skipped test under any CI value, and allows them outside CI', () => {
    const pending = spec('pending', "it('not written yet')")
    const skipped = spec('skipped', "it('skips itself', function () { this.skip() })")
    for (const ci of ['true', '1', 'github-actions']) {
      assert.notEqual(run(pending, ci), 0, `pending with CI=${ci}`)
      assert.notEqual(run(skipped, ci), 0, `this.skip() with CI=${ci}`)
    }
    for (const ci of [undefined, '0', 'false']) {
      assert.equal(run(pending, ci), 0, `pending with CI=${String(ci)}`)
      assert.equal(run(skipped, ci), 0, `this.skip() with CI=${String(ci)}`)
    }
  })
})
