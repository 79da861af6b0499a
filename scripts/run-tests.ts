/**
 * `npm test`: runs the mocha suite inside a private network namespace (unshare -rn, multicast
 * on loopback), so discovery tests use real mDNS and no packet leaves the machine. Where no
 * namespace can be made, tests that need one skip and say why; in CI (see isCi) that is a
 * failure. `.only` always fails the run (a focused test left in would hide the rest of the
 * suite); in CI so does any pending or skipped test.
 *
 * The LAN layer (test/lan) builds its own namespaces with `ip netns add`, which needs real root
 * and cannot work inside `unshare -rn` (it mounts under /run/netns). So it runs first, in its
 * own mocha, from the machine's namespace, where it creates nothing but namespaces; the rest
 * of the suite then runs inside the private namespace.
 */
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { canUnshare, inPrivateNetns, reexecInPrivateNetns } from '../test/support/netns.js'
import { isCi } from '../test/support/ci.js'

const self = fileURLToPath(import.meta.url)
const root = join(dirname(self), '..', '..')

const mocha = join(root, 'node_modules', 'mocha', 'bin', 'mocha.js')
const forbid = ['--forbid-only', ...(isCi() ? ['--forbid-pending'] : [])]
const runMocha = (specs: string[]): number => spawnSync(process.execPath, [mocha, '--timeout', '180000', '--exit', ...forbid, ...specs], { stdio: 'inherit', cwd: root }).status ?? 1

const LAN_GLOB = 'dist/test/lan/**/*.test.js'
const isLan = (spec: string): boolean => /(^|\/)test\/lan(\/|$)/.test(spec)
const given = process.argv.slice(2)
let lanStatus = 0
if (!inPrivateNetns()) {
  const lanSpecs = given.length === 0 ? [LAN_GLOB] : given.filter(isLan)
  if (lanSpecs.length > 0) lanStatus = runMocha(lanSpecs)
  if (given.length > 0 && given.every(isLan)) process.exit(lanStatus)
}
const rest = given.filter(s => !isLan(s))

if (!inPrivateNetns()) {
  if (canUnshare()) {
    const status = reexecInPrivateNetns([process.execPath, self, ...rest]) ?? 1
    process.exit(lanStatus !== 0 ? lanStatus : status)
  }
  if (isCi()) {
    process.stderr.write(`run-tests: CI=${process.env.CI ?? ''} but no private network namespace can be made (unshare -rn failed); refusing to skip the network tests\n`)
    process.exit(1)
  }
  process.stderr.write('run-tests: no private network namespace (unshare -rn failed): tests that need mDNS or multiple hosts will skip\n')
}

const specs = rest.length > 0 ? rest : ['dist/test/**/*.test.js', '--ignore', LAN_GLOB]
const status = runMocha(specs)
process.exit(lanStatus !== 0 ? lanStatus : status)
