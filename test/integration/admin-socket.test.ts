/**
 * The admin socket's safety (docs/security.md, the admin socket), with real sockets and a real
 * second process: the socket appears only with mode 0600, only in a directory of ours that
 * nobody else can enter; a live daemon's socket (another process) is never taken over; a dead
 * one is replaced; a daemon stopping never removes a socket that is no longer its own.
 * (A second daemon on the same data directory is stopped earlier, by the data-dir lock:
 * test/e2e/data-dir.test.ts.)
 */
import { strict as assert } from 'node:assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AdminServer, adminCall, type RequestDecoders } from '../../src/admin/admin-socket.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'

// a type alias (not an interface): CommandSet needs its implicit index signature
type PingCommands = { ping: { request: object, reply: string, progress: never } }
const PING_API: RequestDecoders<PingCommands> = { ping: () => ({}) }

function pingServer (path: string, answer = 'pong'): AdminServer<PingCommands> {
  return new AdminServer<PingCommands>(path, PING_API, { ping: async () => answer }, silentLogger)
}

async function rejection (fn: () => Promise<unknown>): Promise<HoldfastError> {
  try { await fn() } catch (err) {
    assert.ok(err instanceof HoldfastError, `expected a HoldfastError, got ${String(err)}`)
    return err
  }
  assert.fail('expected a rejection, but the call succeeded')
}

/** What a plain client reads from the socket at `path` (the first line), or the error code. */
async function readLine (path: string): Promise<string> {
  return await new Promise(resolve => {
    const socket = createConnection(path)
    let buf = ''
    const timer = setTimeout(() => { socket.destroy(); resolve('timeout') }, 10_000)
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => { buf += d; if (buf.includes('\n')) { clearTimeout(timer); socket.destroy(); resolve(buf.slice(0, buf.indexOf('\n'))) } })
    socket.on('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(err.code ?? 'error') })
  })
}

/** Another process listening on `path`: stands in for a live daemon of another data directory. */
async function liveProcess (path: string): Promise<ChildProcess> {
  const code = "require('node:net').createServer(s => { s.on('error', () => {}); s.end('live\\n') }).listen(process.env.SOCK, () => process.stdout.write('ready\\n'))"
  const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, SOCK: path }, stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('the other process did not listen within 20 s')) }, 20_000)
    child.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('ready')) { clearTimeout(timer); resolve() } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`the other process exited ${String(code)}`)) })
  })
  return child
}

async function kill (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  child.kill('SIGKILL')
  await exited
}

const children: ChildProcess[] = []

describe('integration: the admin socket', function () {
  this.timeout(60_000)
  let root: string
  const servers: Array<AdminServer<PingCommands>> = []

  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-admin-socket-')) })
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop()
    for (const c of children.splice(0)) await kill(c)
    rmSync(root, { recursive: true, force: true })
  })

  it('appears with mode 0600 in our 0700 directory, answers, and leaves no temporary directory', async () => {
    const dir = join(root, 'data')
    mkdirSync(dir, { mode: 0o700 })
    const path = join(dir, 'admin.sock')
    const server = pingServer(path)
    servers.push(server)
    await server.start()
    const st = lstatSync(path)
    assert.ok(st.isSocket())
    assert.equal(st.mode & 0o777, 0o600)
    assert.equal(await adminCall(path, 'ping'), 'pong')
    assert.deepEqual(readdirSync(dir), ['admin.sock'], 'the fresh directory it was bound in is gone')
    await server.stop()
    servers.pop()
    assert.ok(!existsSync(path), 'its own socket is removed on stop')
  })

  it('refuses a directory others can enter, one of another shape, or a symlink (ADMIN_SOCKET_UNSAFE), creating nothing', async () => {
    for (const mode of [0o755, 0o750, 0o711, 0o701, 0o770]) {
      const dir = join(root, `open-${mode.toString(8)}`)
      mkdirSync(dir)
      chmodSync(dir, mode)
      const err = await rejection(async () => { await pingServer(join(dir, 'admin.sock')).start() })
      assert.equal(err.code, 'ADMIN_SOCKET_UNSAFE', `mode ${mode.toString(8)}: ${err.message}`)
      assert.match(err.message, /chmod 700/)
      assert.deepEqual(readdirSync(dir), [], `mode ${mode.toString(8)}: nothing made`)
    }
    const real = join(root, 'real')
    mkdirSync(real, { mode: 0o700 })
    const link = join(root, 'link')
    symlinkSync(real, link)
    assert.equal((await rejection(async () => { await pingServer(join(link, 'admin.sock')).start() })).code, 'ADMIN_SOCKET_UNSAFE')
    assert.deepEqual(readdirSync(real), [])
  })

  it('never takes over a live daemon\'s socket (another process): ADMIN_SOCKET_IN_USE, and it keeps answering; a dead one is replaced', async () => {
    const dir = join(root, 'data')
    mkdirSync(dir, { mode: 0o700 })
    const path = join(dir, 'admin.sock')
    const other = await liveProcess(path)
    assert.equal(await readLine(path), 'live')

    const err = await rejection(async () => { await pingServer(path).start() })
    assert.equal(err.code, 'ADMIN_SOCKET_IN_USE', err.message)
    assert.equal(await readLine(path), 'live', 'the live daemon still answers on its socket')
    assert.deepEqual(readdirSync(dir), ['admin.sock'], 'no temporary directory left behind')

    // killed -9: its socket file stays, dead; the next daemon replaces it
    await kill(other)
    assert.ok(lstatSync(path).isSocket())
    const server = pingServer(path)
    servers.push(server)
    await server.start()
    assert.equal(await adminCall(path, 'ping'), 'pong')
  })

  it('a file at the socket\'s name that is not a socket is not removed (ADMIN_SOCKET_UNSAFE)', async () => {
    const dir = join(root, 'data')
    mkdirSync(dir, { mode: 0o700 })
    const path = join(dir, 'admin.sock')
    writeFileSync(path, 'not a socket')
    assert.equal((await rejection(async () => { await pingServer(path).start() })).code, 'ADMIN_SOCKET_UNSAFE')
    assert.ok(lstatSync(path).isFile())
  })

  it('a daemon stopping never removes a socket that is no longer its own', async () => {
    const dir = join(root, 'data')
    mkdirSync(dir, { mode: 0o700 })
    const path = join(dir, 'admin.sock')
    const first = pingServer(path, 'first')
    await first.start()
    // its name taken from under it (removed by hand), then a second daemon starts there
    unlinkSync(path)
    const second = pingServer(path, 'second')
    servers.push(second)
    await second.start()
    await first.stop()
    assert.equal(await adminCall(path, 'ping'), 'second', 'the second daemon\'s socket is still there')
  })
})
