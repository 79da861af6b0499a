/**
 * An independent mDNS implementation to check ours against: python3-zeroconf (Debian), run in
 * a host of the LAN test bed. It browses for `_holdfast._tcp` and resolves each instance
 * (SRV, TXT, A) the way any DNS-SD client would.
 */
import { spawnSync } from 'node:child_process'
import type { LanBed, LanHost } from './lan.js'

export const PYTHON = '/usr/bin/python3'

export interface ZeroconfResult {
  name: string
  resolved: boolean
  ms: number
  server?: string
  port?: number
  addresses?: string[]
  txt?: Record<string, string | null>
}

/** Installs python3-zeroconf with apt when it is missing (bounded); throws when it cannot. */
export function ensureZeroconf (): void {
  const has = (): boolean => spawnSync(PYTHON, ['-c', 'import zeroconf'], { stdio: 'ignore', timeout: 30_000 }).status === 0
  if (has()) return
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  let r = spawnSync('apt-get', ['install', '-y', '-qq', 'python3-zeroconf'], { encoding: 'utf8', env, timeout: 300_000 })
  if (r.status !== 0) {
    // a fresh machine has no package lists yet
    spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8', env, timeout: 300_000 })
    r = spawnSync('apt-get', ['install', '-y', '-qq', 'python3-zeroconf'], { encoding: 'utf8', env, timeout: 300_000 })
  }
  if (!has()) throw new Error(`python3-zeroconf could not be installed: ${(r.stderr ?? '').trim().slice(-500)}`)
}

const SCRIPT = `
import sys, time, json
from zeroconf import Zeroconf, ServiceBrowser, ServiceListener, IPVersion
expected, list_s, resolve_ms = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
TYPE = "_holdfast._tcp.local."
zc = Zeroconf(ip_version=IPVersion.V4Only)
names = set()
class L(ServiceListener):
    def add_service(self, zc, t, name): names.add(name)
    def update_service(self, zc, t, name): names.add(name)
    def remove_service(self, zc, t, name): pass
browser = ServiceBrowser(zc, TYPE, L())
start = time.monotonic()
while len(names) < expected and time.monotonic() - start < list_s:
    time.sleep(0.05)
out = []
for n in sorted(names):
    t0 = time.monotonic()
    info = zc.get_service_info(TYPE, n, timeout=resolve_ms)
    ms = (time.monotonic() - t0) * 1000
    if info is None or not info.parsed_addresses(IPVersion.V4Only):
        out.append({"name": n, "resolved": False, "ms": ms})
        continue
    txt = {k.decode(): (None if v is None else v.decode()) for k, v in info.properties.items()}
    out.append({"name": n, "resolved": True, "ms": ms, "server": info.server, "port": info.port,
                "addresses": info.parsed_addresses(IPVersion.V4Only), "txt": txt})
browser.cancel()
zc.close()
print(json.dumps(out))
`

/** Browses from `host` until `expected` instances are listed (or `listSeconds`), then resolves each within `resolveMs`. */
export async function zeroconfBrowse (bed: LanBed, host: LanHost, expected: number, listSeconds: number, resolveMs: number): Promise<ZeroconfResult[]> {
  const r = await bed.run(host, [PYTHON, '-c', SCRIPT, String(expected), String(listSeconds), String(resolveMs)], (listSeconds + expected * resolveMs / 1000 + 20) * 1000)
  if (r.code !== 0) throw new Error(`zeroconf probe exited ${r.code}: ${r.stderr.trim().slice(-2000)}`)
  return JSON.parse(r.stdout) as ZeroconfResult[]
}
