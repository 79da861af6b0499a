/**
 * A manager whose store runs out of disk, end to end with real processes: the manager's pack
 * directory is a small tmpfs, mounted in a mount namespace of the manager's own (`unshare -m`
 * inside the test's user namespace) and filled on purpose. The test reaches into that
 * namespace through /proc/<pid>/root to measure the packs and, later, to free the space.
 */
import { strict as assert } from 'node:assert'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { DatabaseSync } from 'node:sqlite'
import { HOLDFAST_BIN, TestFleet, cliJson, cliJsonStatus, runCli } from '../support/fleet.js'
import { compareTrees, seededBytes } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import type { RoundResult, PeerListRow } from '../../src/roles/manager/manager.js'
import type { AgentStatus } from '../../src/roles/agent/agent.js'

const MiB = 1024 * 1024
const PACK_MAGIC_BYTES = 8

/** Whether this process may make a mount namespace and mount a tmpfs in it. */
function canMountTmpfs (): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-tmpfs-probe-'))
  try {
    const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs "$1"', 'sh', dir], { timeout: 10_000 })
    return r.status === 0
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('end to end: the manager\'s store runs out of disk', function () {
  let root: string
  let fleet: TestFleet
  let manager: ChildProcess | undefined

  beforeEach(function () {
    requirePrivateNetns(this)
    if (!canMountTmpfs()) this.skip() // needs a mount namespace (unshare -m); run-tests provides one
    root = mkdtempSync(join(tmpdir(), 'holdfast-store-full-'))
    fleet = new TestFleet(join(root, 'f'))
  })

  afterEach(async function () {
    if (manager !== undefined && manager.exitCode === null && manager.signalCode === null) {
      const exited = new Promise<void>(resolve => manager?.once('exit', () => { resolve() }))
      manager.kill('SIGTERM')
      const timer = setTimeout(() => manager?.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    manager = undefined
    await fleet?.stopAll()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  /** The manager with `packs` on a tmpfs of `sizeMiB`, `fillMiB` of it taken by a filler file. */
  async function startManagerOnTmpfs (sizeMiB: number, fillMiB: number): Promise<{ packsView: string, filler: string }> {
    const packs = join(fleet.managerDir, 'packs')
    mkdirSync(packs, { recursive: true })
    const log = createWriteStream(join(fleet.root, 'manager.log'), { flags: 'a' })
    const script = 'mount -t tmpfs -o size="$1"m tmpfs "$2" && head -c "$3" /dev/zero > "$2/filler" && exec "$4" "$5" manager --config "$6"'
    const child = spawn('unshare', ['-m', 'sh', '-c', script, 'sh', String(sizeMiB), packs, String(fillMiB * MiB), process.execPath, HOLDFAST_BIN, fleet.managerConfig], { stdio: ['ignore', 'pipe', 'pipe'] })
    manager = child
    child.stdout?.pipe(log)
    child.stderr?.pipe(log)
    // Bounded wait for the admin socket.
    for (let i = 0; i < 300; i++) {
      if (child.exitCode !== null) throw new Error(`manager exited during start:\n${fleet.log('manager')}`)
      if (existsSync(fleet.managerSocket) && (await runCli(['status', '--socket', fleet.managerSocket, '--json'], { timeoutMs: 10_000 })).code === 0) {
        // unshare and sh exec into node: the child's pid is the manager's, its root shows the tmpfs
        const packsView = join(`/proc/${String(child.pid)}/root`, packs)
        assert.ok(existsSync(join(packsView, 'filler')), 'the filler is on the manager\'s tmpfs')
        assert.ok(!existsSync(join(packs, 'filler')), 'and not on the file system the test sees directly')
        return { packsView, filler: join(packsView, 'filler') }
      }
      await delay(100)
    }
    throw new Error('manager did not start within 30 s')
  }

  /** Every pack is exactly as long as its last committed record's end (the magic alone if none). */
  function assertNoDeadTail (packsView: string, when: string): void {
    const db = new DatabaseSync(join(fleet.managerDir, 'catalog.db'), { readOnly: true })
    let extents: Map<string, number>
    try {
      extents = new Map(db.prepare('SELECT p.name AS pack, max(c.offset + c.clen) AS end FROM chunks c JOIN packs p ON p.id = c.pack GROUP BY c.pack').all().map(r => [r.pack as string, Number(r.end)]))
    } finally {
      db.close()
    }
    for (const name of readdirSync(packsView).filter(n => n.endsWith('.pack'))) {
      assert.equal(statSync(join(packsView, name)).size, extents.get(name) ?? PACK_MAGIC_BYTES, `${when}: pack ${name} holds only committed records`)
    }
  }

  it('the pull fails with STORE_FULL, leaves no dead pack tail and the agent\'s spool; once space is freed the next pull succeeds and restores bit-exact', async function () {
    const src = join(root, 'src')
    mkdirSync(src)
    writeFileSync(join(src, 'small.txt'), 'small and first\n')
    writeFileSync(join(src, 'large.bin'), seededBytes('store-full', 12 * MiB)) // incompressible
    await fleet.init()
    const agent = await fleet.addAgent('laptop', src)
    // 20 MiB of tmpfs, 16 of it taken: 4 MiB free for 12 MiB of chunks
    const { packsView, filler } = await startManagerOnTmpfs(20, 16)
    await fleet.startAgent(agent)
    await cliJson(['scan-now', '--socket', agent.socket])

    for (const attempt of [1, 2]) {
      const { code, json } = await cliJsonStatus<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '1', '--timeout', '30'])
      assert.equal(code, 1, `attempt ${attempt}: backup-now reports the failure`)
      assert.equal(json.peers[0]?.ok, false)
      assert.match(json.peers[0]?.error ?? '', /^STORE_FULL: /, `attempt ${attempt}: the pull fails with STORE_FULL`)
      assertNoDeadTail(packsView, `after failed attempt ${attempt}`)
    }
    const peers = await cliJson<PeerListRow[]>(['peers', '--socket', fleet.managerSocket])
    assert.match(peers.find(p => p.role === 'agent')?.lastError ?? '', /STORE_FULL: store full/, 'the peer list says why')
    const health = await cliJson<{ store: string, storeError?: string }>(['status', '--socket', fleet.managerSocket])
    assert.equal(health.store, 'store full', 'holdfast status says the store is full')
    const waiting = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(waiting.sealedSets, 1, 'nothing was acked: the set is still staged on the agent')
    assert.ok(waiting.spoolBytes > 0)

    unlinkSync(filler) // space returns
    const { code, json: ok } = await cliJsonStatus<RoundResult>(['backup-now', '--socket', fleet.managerSocket])
    assert.equal(code, 0, JSON.stringify(ok))
    assert.equal(ok.peers[0]?.snapshots.length, 1)
    assertNoDeadTail(packsView, 'after the pull that succeeded')
    assert.equal((await cliJson<{ store: string }>(['status', '--socket', fleet.managerSocket])).store, 'ok')
    const target = join(root, 'restore')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'laptop', '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(src, join(target, 'src')), [])
    const after = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(after.sealedSets, 0, 'acked once committed')
  })
})
