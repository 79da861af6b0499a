/**
 * Who is on the other end of an admin socket connection, for the audit log, on Linux and
 * without a native addon.
 *
 * Node exposes no SO_PEERCRED, and /proc/net/unix lists each socket's own inode but not its
 * peer's. The kernel's sock_diag interface does give the peer's inode, and `ss -xpn`
 * (iproute2) prints it together with the processes that hold each socket: our server-side
 * descriptor names our inode (readlink /proc/self/fd/N), ss maps it to the peer's inode, and
 * the peer's line names the pid(s) holding it; /proc/<pid>/status gives the uid.
 *
 * Best effort, by design: ss lists a process only if the daemon's user may read its
 * /proc/<pid>/fd (root may; a non-root daemon sees only its own uid's processes), /proc may
 * be mounted hidepid, ss may be missing. Every failure gives uid "unknown" with the reason;
 * the lookup is bounded in time (it runs while the command runs, and the audit entry waits
 * for it at most `timeoutMs`) and in output size.
 */
import { execFile } from 'node:child_process'
import { readFile, readlink } from 'node:fs/promises'
import type { Socket } from 'node:net'

export const PEER_LOOKUP_LIMITS = Object.freeze({
  timeoutMs: 500,
  /** ss's output on a busy host: a few hundred bytes a socket. */
  maxOutputBytes: 16 * 1024 * 1024
})

export interface AdminPeer {
  /** The peer process's effective uid, or "unknown" (then `reason` says why). */
  uid: number | 'unknown'
  pid?: number
  /** The uid's name in /etc/passwd, when it has one. */
  user?: string
  reason?: string
}

/** The descriptor behind a net.Socket: libuv's handle keeps it, Node does not expose it. */
function descriptorOf (socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle
  const fd = handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : undefined
}

interface SsLine { peerInode: number, pids: number[] }

/**
 * `ss -xpnH` lines: `u_str ESTAB 0 0 <local addr> <local inode> <peer addr> <peer inode>
 * [users:(("name",pid=N,fd=M),…)]`. Addresses may hold spaces, so the inodes are read from
 * the right. Exported for the unit test.
 */
export function parseSs (text: string): Map<number, SsLine> {
  const out = new Map<number, SsLine>()
  for (const line of text.split('\n')) {
    const m = /\s(\d+)\s+\S+\s+(\d+)(?:\s+users:\((.*)\))?\s*$/.exec(line)
    if (m === null) continue
    const pids = [...(m[3] ?? '').matchAll(/pid=(\d+)/g)].map(p => Number(p[1]))
    out.set(Number(m[1]), { peerInode: Number(m[2]), pids: [...new Set(pids)] })
  }
  return out
}

async function runSs (timeoutMs: number): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile('ss', ['-xpnH'], { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: PEER_LOOKUP_LIMITS.maxOutputBytes, encoding: 'utf8' }, (err, stdout) => {
      if (err !== null) reject(err); else resolve(stdout)
    })
  })
}

async function effectiveUid (pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /^Uid:\s+\d+\s+(\d+)/m.exec(status)
  return m === null ? undefined : Number(m[1])
}

async function userName (uid: number): Promise<string | undefined> {
  try {
    const passwd = await readFile('/etc/passwd', 'utf8')
    for (const line of passwd.split('\n')) {
      const f = line.split(':')
      if (f.length >= 3 && f[2] === String(uid) && f[0] !== '') return f[0]
    }
  } catch {}
  return undefined
}

async function lookup (socket: Socket, timeoutMs: number): Promise<AdminPeer> {
  if (process.platform !== 'linux') return { uid: 'unknown', reason: `peer lookup needs Linux (this is ${process.platform})` }
  const fd = descriptorOf(socket)
  if (fd === undefined) return { uid: 'unknown', reason: 'the connection has no descriptor (closed?)' }
  let link: string
  try { link = await readlink(`/proc/self/fd/${fd}`) } catch (err) { return { uid: 'unknown', reason: `cannot read /proc/self/fd/${fd}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` } }
  const own = /^socket:\[(\d+)\]$/.exec(link)
  if (own === null) return { uid: 'unknown', reason: `descriptor ${fd} is not a socket (${link})` }
  let text: string
  try { text = await runSs(timeoutMs) } catch (err) { return { uid: 'unknown', reason: `ss -xpn failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` } }
  const table = parseSs(text)
  const ours = table.get(Number(own[1]))
  if (ours === undefined) return { uid: 'unknown', reason: `ss does not list our socket ${own[1]}` }
  const peer = table.get(ours.peerInode)
  if (peer === undefined || peer.pids.length === 0) return { uid: 'unknown', reason: `no process visible to uid ${process.getuid?.() ?? '?'} holds the peer socket ${ours.peerInode} (gone, or another user's process)` }
  const uids = new Set<number>()
  for (const pid of peer.pids) {
    try {
      const uid = await effectiveUid(pid)
      if (uid !== undefined) uids.add(uid)
    } catch {}
  }
  if (uids.size !== 1) return { uid: 'unknown', pid: peer.pids[0], reason: uids.size === 0 ? `cannot read /proc/${peer.pids[0]}/status` : `the peer socket is held by processes of several uids (${[...uids].join(', ')})` }
  const uid = [...uids][0] as number
  const user = await userName(uid)
  return { uid, pid: Math.min(...peer.pids), ...(user === undefined ? {} : { user }) }
}

/**
 * The peer of `socket`, or uid "unknown" with a reason; never throws, never takes longer than
 * about `timeoutMs` (ss is killed at that point).
 */
export async function adminPeer (socket: Socket, timeoutMs: number = PEER_LOOKUP_LIMITS.timeoutMs): Promise<AdminPeer> {
  try {
    return await lookup(socket, timeoutMs)
  } catch (err) {
    return { uid: 'unknown', reason: `peer lookup failed: ${err instanceof Error ? err.message : String(err)}` }
  }
}
