/**
 * Runs a script inside a private network namespace (`unshare -rn`) with multicast routed on
 * loopback, so real mDNS works between processes and not one packet reaches the machine's
 * real interfaces (the network rule in DEVELOPERS.md). The script re-executes itself inside;
 * HOLDFAST_NETNS marks that it is already there.
 */
import { spawnSync } from 'node:child_process'

export const NETNS_ENV = 'HOLDFAST_NETNS'

export function inPrivateNetns (): boolean {
  return process.env[NETNS_ENV] === '1'
}

/** Can this machine make a private namespace? (false on hosts that forbid user namespaces) */
export function canUnshare (): boolean {
  const r = spawnSync('unshare', ['-rn', 'sh', '-c', 'ip link set lo up multicast on && ip route add 224.0.0.0/4 dev lo'], { stdio: 'ignore' })
  return r.status === 0
}

/**
 * Re-runs `argv` inside a fresh namespace and returns its exit status, or returns undefined
 * when we are inside already (the caller then does its work).
 */
export function reexecInPrivateNetns (argv: string[]): number | undefined {
  if (inPrivateNetns()) return undefined
  const setup = 'ip link set lo up multicast on && ip route add 224.0.0.0/4 dev lo && exec "$@"'
  const r = spawnSync('unshare', ['-rn', 'sh', '-c', setup, 'sh', ...argv], { stdio: 'inherit', env: { ...process.env, [NETNS_ENV]: '1' } })
  if (r.error !== undefined) throw r.error
  return r.status ?? 1
}
