/**
 * The local admin channel between the CLI and a running daemon: a Unix socket, one JSON
 * request per connection, answered by zero or more progress lines and one final line. Only the
 * daemon's user (and, with `admin.group`, that group's members) can use it.
 *
 * Access control (docs/security.md, the admin socket): Node has no SO_PEERCRED, so who may
 * connect is decided by the file system, which the kernel enforces at connect(2) (write
 * permission on the socket, search permission on every directory above it). The socket's
 * directory must be a real directory of ours that nobody else can enter (mode & 0o077 == 0),
 * else the daemon refuses to start (ADMIN_SOCKET_UNSAFE). With `admin.group` G, the directory
 * (made if missing) is ours, of group G, mode 0710 (members may enter, not list; others
 * nothing), and the socket is 0660 of group G. Either way the socket is bound inside a fresh
 * 0700 directory, given its group and mode, and only then hard-linked to its name, so it is
 * never reachable with a looser mode or another group (umask cannot be set from the daemon's
 * worker thread). A socket already at the name is connected to first: one that answers is
 * another live daemon's and is left alone (ADMIN_SOCKET_IN_USE); only a dead one is removed.
 * On stop the name is removed only if it is still our socket. Who sent each audited request is
 * looked up separately (peer-credentials.ts).
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net'
import { chmodSync, lchownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, type Stats } from 'node:fs'
import { dirname, join } from 'node:path'
import { HoldfastError, errorCode, type HoldfastErrorCode } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { adminPeer, type AdminPeer } from './peer-credentials.js'

export const ADMIN_LIMITS = Object.freeze({
  maxRequestBytes: 64 * 1024,
  maxReplyLineBytes: 64 * 1024 * 1024,
  /** How long a socket found at the name may take to accept before it is taken as live (not removed). */
  probeTimeoutMs: 5_000
})

/**
 * The socket's directory must be a directory (not a link to one) owned by us with no access
 * for others; without a group, none for the group either; with `gid`, it must be of that group
 * and the group may not write (it could replace the socket's name). This is what makes the
 * socket ours (and the group's) alone, since the peer's uid is not checked at connect.
 */
export function checkSocketDir (dir: string, gid?: number): void {
  let st: Stats
  try {
    st = lstatSync(dir)
  } catch (err) {
    throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `admin socket directory ${dir} cannot be read: ${(err as Error).message}`, { dir })
  }
  const uid = process.getuid?.()
  if (!st.isDirectory()) throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `admin socket directory ${dir} is not a directory (a symlink?); put adminSocket inside the data directory`, { dir })
  if (uid !== undefined && st.uid !== uid) throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `admin socket directory ${dir} belongs to uid ${st.uid}, not to this daemon's uid ${uid}`, { dir })
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
  if (gid === undefined && (st.mode & 0o077) !== 0) {
    throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `admin socket directory ${dir} is open to others (mode ${mode}); run: chmod 700 ${dir}, or put adminSocket inside the data directory`, { dir })
  }
  if (gid !== undefined && (st.gid !== gid || (st.mode & 0o027) !== 0)) {
    throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `admin socket directory ${dir} must be of group ${gid} with mode 0710 or 0750 (it is group ${st.gid}, mode ${mode})`, { dir })
  }
}

/** A group name (looked up in /etc/group) or a numeric gid, as `admin.group` gives it. */
export function resolveGroup (group: string | number): number {
  if (typeof group === 'number') return group
  if (/^\d+$/.test(group)) return Number(group)
  let text = ''
  try { text = readFileSync('/etc/group', 'utf8') } catch {}
  for (const line of text.split('\n')) {
    const f = line.split(':')
    if (f.length >= 3 && f[0] === group && /^\d+$/.test(f[2])) return Number(f[2])
  }
  throw new HoldfastError('CONFIG_INVALID', `admin.group: no group named '${group}' in /etc/group (give a group name or a gid)`, { key: 'admin.group' })
}

/**
 * Makes the socket's directory ready for a group: created 0700 if missing (never looser than
 * that while it is not yet the group's), then given group `gid` and mode 0710. A directory that
 * exists must be ours and closed to others; it is not loosened beyond what the group needs.
 */
function prepareGroupDir (dir: string, gid: number): void {
  try {
    mkdirSync(dir, { mode: 0o700 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `cannot create the admin socket directory ${dir}: ${(err as Error).message}`, { dir })
  }
  const st = lstatSync(dir)
  const uid = process.getuid?.()
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o007) !== 0) checkSocketDir(dir)
  try {
    // lchown: a name swapped for a link after the lstat is not followed
    lchownSync(dir, st.uid, gid)
  } catch (err) {
    throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `cannot give ${dir} to group ${gid} (is the daemon's user a member?): ${(err as Error).message}`, { dir })
  }
  chmodSync(dir, 0o710)
  checkSocketDir(dir, gid)
}

/** Whether something accepts connections on the socket at `path` (within the probe timeout). */
async function answers (path: string): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = createConnection(path)
    const done = (live: boolean): void => { clearTimeout(timer); socket.destroy(); resolve(live) }
    // a peer that neither accepts nor refuses in time is taken as live: never remove it
    const timer = setTimeout(() => { done(true) }, ADMIN_LIMITS.probeTimeoutMs)
    socket.once('connect', () => { done(true) })
    socket.once('error', () => { done(false) })
  })
}

export interface AdminRequest {
  cmd: string
  args: Record<string, unknown>
}

/** One command of a daemon's admin API: what it takes, what it answers, what it reports on the way. */
export interface CommandSpec { request: object, reply: unknown, progress: unknown }

/** A daemon's admin API: command name → its spec (src/admin/api.ts declares them). */
export type CommandSet = Record<string, CommandSpec>

/**
 * Per command, the one place its request is checked: raw JSON args in, a typed request out,
 * or ADMIN_BAD_REQUEST with a message that says what is wrong.
 */
export type RequestDecoders<S extends CommandSet> = { readonly [C in keyof S]: (args: Record<string, unknown>) => S[C]['request'] }

export interface AdminContext<P = unknown> {
  progress: (p: P) => void
  signal: AbortSignal
  /**
   * Who sent the request (peer-credentials.ts): looked up on the first call only, so only the
   * commands that record it (the audited ones) pay for it; never throws.
   */
  peer: () => Promise<AdminPeer>
}

/** A daemon's handlers: one per command, each given a request its decoder has checked. */
export type AdminHandlers<S extends CommandSet> = { [C in keyof S]: (request: S[C]['request'], ctx: AdminContext<S[C]['progress']>) => Promise<S[C]['reply']> }

/** The untyped view the socket dispatches through (the typed maps are checked at compile time). */
type AnyHandler = (request: object, ctx: AdminContext) => Promise<unknown>
type AnyDecoder = (args: Record<string, unknown>) => object

export class AdminServer<S extends CommandSet> {
  private server?: Server
  /** The socket file this server made (to remove on stop only if the name is still it). */
  private bound?: { dev: number, ino: number }
  private readonly sockets = new Set<Socket>()
  private readonly decoders: Record<string, AnyDecoder>
  private readonly handlers: Record<string, AnyHandler>

  /** `options.group`: `admin.group` (a name or gid) whose members may use the socket too. */
  constructor (private readonly path: string, decoders: RequestDecoders<S>, handlers: AdminHandlers<S>, private readonly log: Logger, private readonly options: { group?: string | number } = {}) {
    this.decoders = decoders as unknown as Record<string, AnyDecoder>
    this.handlers = handlers as unknown as Record<string, AnyHandler>
  }

  /** The commands this server answers. */
  commands (): string[] {
    return Object.keys(this.handlers).filter(c => Object.hasOwn(this.decoders, c))
  }

  async start (): Promise<void> {
    const dir = dirname(this.path)
    const gid = this.options.group === undefined ? undefined : resolveGroup(this.options.group)
    if (gid === undefined) checkSocketDir(dir); else prepareGroupDir(dir, gid)
    const server = createServer(socket => { this.onConnection(socket) })
    // Bound in a fresh 0700 directory, given its group and mode, then linked to its name:
    // reachable at the name only as 0600 (or 0660 of the group), never looser (umask cannot
    // be set from a worker thread).
    const fresh = mkdtempSync(join(dir, '.sock-'))
    const bound = join(fresh, 's')
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(bound, () => { server.off('error', reject); resolve() })
      })
      if (gid !== undefined) lchownSync(bound, process.getuid?.() ?? -1, gid)
      chmodSync(bound, gid === undefined ? 0o600 : 0o660)
      await this.link(bound)
    } catch (err) {
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
      throw err
    } finally {
      rmSync(fresh, { recursive: true, force: true })
    }
    const st = lstatSync(this.path)
    this.bound = { dev: st.dev, ino: st.ino }
    this.server = server
  }

  /**
   * Links the bound socket to its name. link(2) never replaces: a name that exists is probed,
   * and removed only if it is a dead socket (a daemon that crashed); a live one is refused.
   */
  private async link (bound: string): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(bound, this.path)
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      let st: Stats
      try { st = lstatSync(this.path) } catch { continue }
      if (!st.isSocket()) throw new HoldfastError('ADMIN_SOCKET_UNSAFE', `${this.path} exists and is not a socket; not replaced`, { path: this.path })
      if (await answers(this.path)) throw new HoldfastError('ADMIN_SOCKET_IN_USE', `another daemon answers on ${this.path}; stop it first (its socket is left alone)`, { path: this.path })
      try { unlinkSync(this.path) } catch {}
    }
    throw new HoldfastError('ADMIN_SOCKET_IN_USE', `${this.path} keeps reappearing; another daemon is starting on it`, { path: this.path })
  }

  async stop (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => { if (this.server === undefined) resolve(); else this.server.close(() => { resolve() }) })
    this.server = undefined
    // only our own socket: a name another daemon has since taken is not ours to remove
    try {
      const st = lstatSync(this.path)
      if (this.bound !== undefined && st.dev === this.bound.dev && st.ino === this.bound.ino) unlinkSync(this.path)
    } catch {}
    this.bound = undefined
  }

  private onConnection (socket: Socket): void {
    this.sockets.add(socket)
    const controller = new AbortController()
    socket.on('close', () => { this.sockets.delete(socket); controller.abort(new HoldfastError('ABORTED', 'client went away')) })
    socket.on('error', () => {})
    let buffer = ''
    let handled = false
    socket.setEncoding('utf8')
    socket.on('data', (data: string) => {
      if (handled) return
      buffer += data
      if (buffer.length > ADMIN_LIMITS.maxRequestBytes) { handled = true; this.reply(socket, { ok: false, error: { code: 'ADMIN_BAD_REQUEST', message: 'request too large' } }); return }
      const nl = buffer.indexOf('\n')
      if (nl < 0) return
      handled = true
      let peer: Promise<AdminPeer> | undefined
      void this.handle(buffer.slice(0, nl), socket, controller.signal, async () => await (peer ??= adminPeer(socket)))
    })
  }

  private async handle (line: string, socket: Socket, signal: AbortSignal, peer: () => Promise<AdminPeer>): Promise<void> {
    let request: AdminRequest
    try {
      const parsed = JSON.parse(line) as unknown
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as AdminRequest).cmd !== 'string') throw new HoldfastError('ADMIN_BAD_REQUEST', 'not a request')
      request = { cmd: (parsed as AdminRequest).cmd, args: ((parsed as AdminRequest).args ?? {}) }
    } catch {
      // JSON.parse's SyntaxError and a shape that is not {cmd, args} get the same answer
      this.reply(socket, { ok: false, error: { code: 'ADMIN_BAD_REQUEST', message: 'request is not valid JSON {cmd, args}' } })
      return
    }
    // own keys only: a request naming 'constructor' or '__proto__' is not a command
    if (!Object.hasOwn(this.handlers, request.cmd) || !Object.hasOwn(this.decoders, request.cmd)) {
      this.reply(socket, { ok: false, error: { code: 'ADMIN_BAD_REQUEST', message: `this daemon has no command '${request.cmd}'` } })
      return
    }
    try {
      const args = request.args
      if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new HoldfastError('ADMIN_BAD_REQUEST', `'${request.cmd}': args must be an object`)
      const decoded = this.decoders[request.cmd](args)
      const result = await this.handlers[request.cmd](decoded, { progress: p => { socket.write(JSON.stringify({ progress: p }) + '\n') }, signal, peer })
      this.reply(socket, { ok: true, result })
    } catch (err) {
      this.log.debug('admin command failed', { cmd: request.cmd, err: String(err) })
      this.reply(socket, { ok: false, error: { code: errorCode(err), message: err instanceof Error ? err.message : String(err) } })
    }
  }

  private reply (socket: Socket, message: unknown): void {
    socket.end(JSON.stringify(message, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v) + '\n')
  }
}

/** Sends one request to a daemon and waits for its final answer. */
export async function adminCall (path: string, cmd: string, args: object = {}, options: { timeoutMs?: number, onProgress?: (p: unknown) => void } = {}): Promise<unknown> {
  return await new Promise((resolve, reject) => {
    const socket = createConnection(path)
    let buffer = ''
    let settled = false
    const finish = (fn: () => void): void => { if (!settled) { settled = true; clearTimeout(timer); socket.destroy(); fn() } }
    const timer = setTimeout(() => { finish(() => { reject(new HoldfastError('TIMEOUT', `daemon did not answer '${cmd}' within ${(options.timeoutMs ?? 60_000) / 1000} s`)) }) }, options.timeoutMs ?? 60_000)
    socket.setEncoding('utf8')
    socket.on('connect', () => { socket.write(JSON.stringify({ cmd, args }) + '\n') })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      finish(() => { reject(new HoldfastError('ADMIN_UNREACHABLE', `cannot reach the daemon at ${path} (${err.code ?? err.message}); is it running?`)) })
    })
    socket.on('data', (data: string) => {
      buffer += data
      if (buffer.length > ADMIN_LIMITS.maxReplyLineBytes) { finish(() => { reject(new HoldfastError('FRAME_TOO_LARGE', 'daemon reply too large')) }); return }
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        let msg: { progress?: unknown, ok?: boolean, result?: unknown, error?: { code: string, message: string } }
        try { msg = JSON.parse(line) } catch { finish(() => { reject(new HoldfastError('FRAME_MALFORMED', 'daemon sent a malformed reply')) }); return }
        if (msg.progress !== undefined) { options.onProgress?.(msg.progress); continue }
        if (msg.ok === true) { finish(() => { resolve(msg.result) }); return }
        const e = msg.error ?? { code: 'REMOTE_ERROR', message: 'unknown error' }
        finish(() => { reject(new HoldfastError((e.code as HoldfastErrorCode), e.message)) })
        return
      }
    })
    socket.on('close', () => { finish(() => { reject(new HoldfastError('ADMIN_UNREACHABLE', `daemon closed the connection before answering '${cmd}'`)) }) })
  })
}
