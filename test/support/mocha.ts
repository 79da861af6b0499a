import { inPrivateNetns } from './netns.js'
import { isCi } from './ci.js'

/**
 * Skips a test that needs the private network namespace (real mDNS between processes) when
 * the runner could not make one. In CI it fails instead: there nothing may skip (the runner
 * refuses to start without a namespace and passes --forbid-pending, but mocha can be run by
 * hand too).
 */
export function requirePrivateNetns (ctx: Mocha.Context): void {
  if (!inPrivateNetns()) {
    if (isCi()) throw new Error('this test needs a private network namespace (run it through dist/scripts/run-tests.js); in CI it may not skip')
    // Reason: mDNS multicast may only be sent inside a namespace we created (network rule).
    ctx.skip()
  }
}
