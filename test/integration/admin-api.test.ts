/**
 * The admin API (src/admin/api.ts) against real daemons: a Manager and an Agent started in
 * this process, answering on their real admin sockets. Every command the API names must be
 * served by the daemon it belongs to, and a malformed request must come back as
 * ADMIN_BAD_REQUEST from the socket's decoder, before any handler runs.
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { adminCall } from '../../src/admin/admin-socket.js'
import { AGENT_API, MANAGER_API } from '../../src/admin/api.js'
import { resolveConfig } from '../../src/config/config.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { Manager } from '../../src/roles/manager/manager.js'
import { Agent } from '../../src/roles/agent/agent.js'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import { HoldfastError } from '../../src/util/errors.js'

async function rejection (p: Promise<unknown>): Promise<HoldfastError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof HoldfastError, `expected a HoldfastError, got ${String(err)}`)
    return err
  }
  assert.fail('expected the call to fail')
}

describe('integration: admin API served by the daemons', function () {
  this.timeout(60_000)
  let root: string
  let manager: Manager
  let agent: Agent
  let managerSocket: string
  let agentSocket: string

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-admin-api-'))
    const fleetKey = newFleetKey()
    const folder = join(root, 'home')
    mkdirSync(folder)
    const listen = ['/ip4/127.0.0.1/tcp/0']
    const mconf = resolveConfig({ role: 'manager', dataDir: join(root, 'manager'), fleetKey, listen, mdns: { enabled: false } }, root)
    managerSocket = mconf.adminSocket
    // a manual clock: no pull round and no scan starts on its own while the test runs
    manager = new Manager(mconf, new ManualClock(0), silentLogger)
    await manager.start()
    const aconf = resolveConfig({ role: 'agent', dataDir: join(root, 'agent'), fleetKey, managers: [manager.id], listen, mdns: { enabled: false }, agent: { folders: [folder] } }, root)
    agentSocket = aconf.adminSocket
    agent = new Agent(aconf, new ManualClock(0), silentLogger)
    await agent.start()
  })

  after(async () => {
    await agent?.stop()
    await manager?.stop()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  const daemons = (): Array<{ role: string, socket: () => string, commands: string[] }> => [
    { role: 'manager', socket: () => managerSocket, commands: Object.keys(MANAGER_API) },
    { role: 'agent', socket: () => agentSocket, commands: Object.keys(AGENT_API) }
  ]

  for (const d of daemons()) {
    it(`every ${d.role} command of the API has a handler, and its decoder rejects an unknown argument`, async () => {
      assert.ok(d.commands.length > 0)
      for (const cmd of d.commands) {
        // An unknown argument reaches the decoder only when the daemon serves the command;
        // a command it does not serve is refused by name instead.
        const err = await rejection(adminCall(d.socket(), cmd, { noSuchArgument: 1 }, { timeoutMs: 10_000 }))
        assert.equal(err.code, 'ADMIN_BAD_REQUEST', `${cmd}: ${err.message}`)
        assert.match(err.message, /unknown argument 'noSuchArgument'/, `${cmd}: ${err.message}`)
      }
    })
  }

  it('a command no daemon has is refused by name', async () => {
    for (const cmd of ['nope', 'constructor', '__proto__', 'toString']) {
      const err = await rejection(adminCall(managerSocket, cmd, {}, { timeoutMs: 10_000 }))
      assert.equal(err.code, 'ADMIN_BAD_REQUEST')
      assert.match(err.message, /no command/, err.message)
    }
    const err = await rejection(adminCall(agentSocket, 'ls', { endpoint: 'x' }, { timeoutMs: 10_000 }))
    assert.match(err.message, /no command 'ls'/)
  })

  it('malformed requests are ADMIN_BAD_REQUEST with a message naming what is wrong', async () => {
    const cases: Array<{ cmd: string, args: unknown, message: RegExp }> = [
      { cmd: 'ls', args: {}, message: /missing 'endpoint'/ },
      { cmd: 'ls', args: { endpoint: 7 }, message: /'endpoint' must be a string/ },
      { cmd: 'ls', args: { endpoint: 'e', snapshot: 'latest' }, message: /'snapshot' must be a whole number/ },
      { cmd: 'ls', args: { endpoint: 'e', snapshot: 2, at: 5 }, message: /not both/ },
      { cmd: 'versions', args: { endpoint: 'e', path: 'home' }, message: /path under a folder/ },
      { cmd: 'find', args: { pattern: ['*'] }, message: /'pattern' must be a string/ },
      { cmd: 'restore', args: { endpoint: 'e', target: 'relative/dir' }, message: /absolute 'target'/ },
      { cmd: 'restore', args: { endpoint: 'e', target: '/tmp/x', overwrite: true }, message: /'overwrite' goes with 'toEndpoint'/ },
      { cmd: 'restore', args: { endpoint: 'e', toEndpoint: true, path: '//' }, message: /must name a folder/ },
      { cmd: 'backup-now', args: { expectPeers: -1 }, message: /'expectPeers' must be a whole number/ },
      { cmd: 'backup-now', args: { timeoutMs: '30' }, message: /'timeoutMs' must be a whole number/ },
      { cmd: 'verify', args: { readData: 'yes' }, message: /'readData' must be true or false/ },
      { cmd: 'retention-set', args: {}, message: /nothing to set/ },
      { cmd: 'retention-set', args: { rules: { keepLast: 1.5 } }, message: /keep-last/ },
      { cmd: 'prune', args: { repackThreshold: 10 }, message: /within 0\.\.1/ },
      { cmd: 'snapshots', args: [], message: /args must be an object/ }
    ]
    for (const c of cases) {
      const err = await rejection(adminCall(managerSocket, c.cmd, c.args as object, { timeoutMs: 10_000 }))
      assert.equal(err.code, 'ADMIN_BAD_REQUEST', `${c.cmd} ${JSON.stringify(c.args)}: ${err.code} ${err.message}`)
      assert.match(err.message, c.message, `${c.cmd} ${JSON.stringify(c.args)}`)
    }
  })

  it('a well-formed request still reaches its handler', async () => {
    assert.deepEqual(await adminCall(managerSocket, 'peers', {}, { timeoutMs: 10_000 }), [])
    const err = await rejection(adminCall(managerSocket, 'ls', { endpoint: 'nobody' }, { timeoutMs: 10_000 }))
    assert.equal(err.code, 'PEER_UNKNOWN')
  })
})
