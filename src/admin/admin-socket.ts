/**
 * The local admin channel between the CLI and a running daemon: a Unix socket with mode 0600
 * inside the daemon's 0700 data directory, one JSON request per connection, answered by zero
 * or more progress lines and one final line. Only the local user who owns the daemon can use it.
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net'
import { chmodSync, unlinkSync } from 'node:fs'
import { HoldfastError, errorCode, type HoldfastErrorCode } from '../util/errors.js'
import type { Logger } from '../util/log.js'

export const ADMIN_LIMITS = Object.freeze({ maxRequestBytes: 64 * 1024, maxReplyLineBytes: 64 * 1024 * 1024 })

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

export interface AdminContext<P = unknown> { progress: (p: P) => void, signal: AbortSignal }

/** A daemon's handlers: one per command, each given a request its decoder has checked. */
export type AdminHandlers<S extends CommandSet> = { [C in keyof S]: (request: S[C]['request'], ctx: AdminContext<S[C]['progress']>) => Promise<S[C]['reply']> }

/** The untyped view the socket dispatches through (the typed maps are checked at compile time). */
type AnyHandler = (request: object, ctx: AdminContext) => Promise<unknown>
type AnyDecoder = (args: Record<string, unknown>) => object

export class AdminServer<S extends CommandSet> {
  private server?: Server
  private readonly sockets = new Set<Socket>()
  private readonly decoders: Record<string, AnyDecoder>
  private readonly handlers: Record<string, AnyHandler>

  constructor (private readonly path: string, decoders: RequestDecoders<S>, handlers: AdminHandlers<S>, private readonly log: Logger) {
    this.decoders = decoders as unknown as Record<string, AnyDecoder>
    this.handlers = handlers as unknown as Record<string, AnyHandler>
  }

  /** The commands this server answers. */
  commands (): string[] {
    return Object.keys(this.handlers).filter(c => Object.hasOwn(this.decoders, c))
  }

  async start (): Promise<void> {
    try { unlinkSync(this.path) } catch {}
    const server = createServer(socket => { this.onConnection(socket) })
    // The socket is made inside the daemon's 0700 data directory, so nobody else can reach it
    // in the moment before its own mode is tightened. (umask cannot be set from a worker thread.)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.path, () => { server.off('error', reject); resolve() })
    })
    chmodSync(this.path, 0o600)
    this.server = server
  }

  async stop (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => { if (this.server === undefined) resolve(); else this.server.close(() => { resolve() }) })
    this.server = undefined
    try { unlinkSync(this.path) } catch {}
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
      void this.handle(buffer.slice(0, nl), socket, controller.signal)
    })
  }

  private async handle (line: string, socket: Socket, signal: AbortSignal): Promise<void> {
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
      const result = await this.handlers[request.cmd](decoded, { progress: p => { socket.write(JSON.stringify({ progress: p }) + '\n') }, signal })
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
