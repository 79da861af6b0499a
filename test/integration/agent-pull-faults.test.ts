/**
 * A staged set that lost a chunk from the agent's spool (issue 8 item 2): a REAL agent (in
 * process: libp2p on 127.0.0.1, SQLite, spool, worker threads) and a REAL puller with its
 * store. The sets after the broken one are still pulled; the broken set is reported, the
 * agent stages its path again from the source, and the next pull brings it, byte for byte.
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { Agent } from '../../src/roles/agent/agent.js'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { resolveConfig } from '../../src/config/config.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { Catalog } from '../../src/store/core/catalog.js'
import { PackStore } from '../../src/store/core/packs.js'
import { Puller, type PullResult } from '../../src/roles/manager/puller.js'
import { chunkId, decompressChunk } from '../../src/codec/chunk-codec.js'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'

describe('integration: a set the agent cannot serve whole', function () {
  this.timeout(120_000)
  let root = ''
  let agent: Agent | undefined
  let manager: HoldfastNode | undefined
  let catalog: Catalog | undefined
  let packs: PackStore | undefined
  let puller: Puller | undefined

  afterEach(async () => {
    await puller?.close()
    await agent?.stop()
    await manager?.stop()
    packs?.close()
    catalog?.close()
    agent = undefined; manager = undefined; packs = undefined; catalog = undefined; puller = undefined
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  it('pulls the sets after it, reports it, and gets its path on the next pull after the agent stages it again', async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-pull-faults-'))
    const folder = join(root, 'docs')
    mkdirSync(folder)
    const fleetKey = newFleetKey()
    // the agent's clock only moves when the test says: its scan loop never runs on its own
    const clock = new ManualClock(Date.now())
    const managerKey = await generateKeyPair('Ed25519')
    const config = resolveConfig({
      role: 'agent',
      name: 'endpoint-1',
      dataDir: join(root, 'agent'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      fleetKey,
      managers: [peerIdFromPrivateKey(managerKey).toString()],
      mdns: { enabled: false },
      adminSocket: join(root, 'agent.sock'),
      agent: { folders: [folder], settleSeconds: 0, scanIntervalSeconds: 3600, watch: 'scan', workers: 1 }
    })
    agent = new Agent(config, clock, silentLogger)
    await agent.start()
    const content = (name: string): Buffer => Buffer.from(`${name}: ${'x'.repeat(1000)}`)
    const sets: number[] = []
    for (const name of ['one.txt', 'two.txt', 'three.txt']) {
      writeFileSync(join(folder, name), content(name))
      await clock.advance(Math.max(0, Date.now() - clock.now() + 1))
      // the round the agent started by itself may be under way: it joins that one first
      let round = await agent.scanNow()
      for (let i = 0; i < 3 && round.set === undefined; i++) round = await agent.scanNow()
      assert.ok(round.set !== undefined, `${name} staged`)
      sets.push(round.set.id)
    }
    // set 2's spool segments are lost (deleted by hand, a bad disk, or an older version's ack)
    const spool = join(config.dataDir, 'spool')
    const lost = readdirSync(spool).filter(n => n.startsWith(`set-${sets[1]}-`))
    assert.ok(lost.length > 0)
    for (const seg of lost) unlinkSync(join(spool, seg))

    manager = await createHoldfastNode({ privateKey: managerKey, fleetKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
    catalog = new Catalog(join(root, 'catalog.db'))
    packs = new PackStore(join(root, 'packs'))
    puller = new Puller({ host: manager, catalog, packs, clock, log: silentLogger })
    const status = agent.status()
    const peer = { peerId: status.peerId, name: 'endpoint-1', addrs: status.listen.map(a => multiaddr(a)) }

    const first = await puller.pull(peer, { rate: 0 })
    const committed = new Set(first.snapshots.map(s => s.setId))
    assert.ok(committed.has(sets[0]) && committed.has(sets[2]), `sets before and after the broken one are pulled: ${JSON.stringify(first.snapshots)}`)
    assert.ok(!committed.has(sets[1]))
    assert.deepEqual(first.failedSets.map(f => [f.setId, f.code]), [[sets[1], 'CHUNK_MISSING']])

    // the agent noticed the miss: it drops the broken set and stages its path again (its scan
    // loop may do so while the first pull still runs; then that pull took it already)
    const two = chunkId(content('two.txt'))
    for (let i = 0; i < 5 && catalog.chunkLocation(two) === undefined; i++) {
      await agent.scanNow()
      const again: PullResult = await puller.pull(peer, { rate: 0 })
      assert.deepEqual(again.failedSets, [], 'the broken set is gone from the manifest')
    }
    assert.ok(!agent.status().errors.some(e => e.code === 'SET_RESTAGED'), 'no path is left waiting')
    assert.equal(agent.status().sealedSets, 0, 'everything acknowledged')
    // bytes in the store equal bytes written, for every file
    for (const name of ['one.txt', 'two.txt', 'three.txt']) {
      const loc = catalog.chunkLocation(chunkId(content(name)))
      assert.ok(loc !== undefined, `${name} is in the store`)
      assert.ok(Buffer.from(decompressChunk(packs.read(loc), loc.rawlen)).equals(content(name)), `${name} byte for byte`)
    }
  })
})
