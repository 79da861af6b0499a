import { inPrivateNetns } from './netns.js'

/**
 * Skips a test that needs the private network namespace (real mDNS between processes) when
 * the runner could not make one. The runner refuses to get here with CI=true.
 */
export function requirePrivateNetns (ctx: Mocha.Context): void {
  if (!inPrivateNetns()) {
    // Reason: mDNS multicast may only be sent inside a namespace we created (network rule).
    ctx.skip()
  }
}
