/**
 * Makes the small-file tree of issue 12 (1-4 KiB files, 100 to a directory) once, so that a
 * quiet bench run can use it (`e2e-corpus --small-tree DIR`) without spending 25-45 min making
 * 786k files inside the run.
 *
 *   node dist/bench/make-small-tree.js DIR [FILES]   (FILES default 785,790 = 10 × corpus A)
 */
import { existsSync, readdirSync } from 'node:fs'
import { makeSmallTree, say } from './support.js'

const [dir, filesArg] = process.argv.slice(2)
if (dir === undefined) {
  console.error('usage: make-small-tree DIR [FILES]')
  process.exit(2)
}
if (existsSync(dir) && readdirSync(dir).length > 0) {
  console.error(`${dir} is not empty: remove it first, or pass it to the bench as it is`)
  process.exit(2)
}
const files = Number(filesArg ?? 785_790)
const t0 = performance.now()
makeSmallTree(dir, files)
say(`made ${files} files in ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
