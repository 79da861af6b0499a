/**
 * `npm test`: runs the mocha suite inside a private network namespace (unshare -rn, multicast
 * on loopback), so discovery tests use real mDNS and no packet leaves the machine. Where no
 * namespace can be made, tests that need one skip and say why; in CI (see isCi) that is a
 * failure. `.only` always fails the run (a focused test left in would hide the rest of the
 * suite); in CI so does any pending or skipped test.
 */
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { canUnshare, inPrivateNetns, reexecInPrivateNetns } from '../test/support/netns.js'
import { isCi } from '../test/support/ci.js'

const self = fileURLToPath(import.meta.url)
const root = join(dirname(self), '..', '..')

if (!inPrivateNetns()) {
  if (canUnshare()) {
    process.exit(reexecInPrivateNetns([process.execPath, self, ...process.argv.slice(2)]) ?? 1)
  }
  if (isCi()) {
    process.stderr.write(`run-tests: CI=${process.env.CI ?? ''} but no private network namespace can be made (unshare -rn failed); refusing to skip the network tests\n`)
    process.exit(1)
  }
  process.stderr.write('run-tests: no private network namespace (unshare -rn failed): tests that need mDNS or multiple hosts will skip\n')
}

const mocha = join(root, 'node_modules', 'mocha', 'bin', 'mocha.js')
const specs = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['dist/test/**/*.test.js']
const forbid = ['--forbid-only', ...(isCi() ? ['--forbid-pending'] : [])]
const r = spawnSync(process.execPath, [mocha, '--timeout', '180000', '--exit', ...forbid, ...specs], { stdio: 'inherit', cwd: root })
process.exit(r.status ?? 1)
