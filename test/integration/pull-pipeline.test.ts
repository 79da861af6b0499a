/**
 * Pipelined sets (issue 12 item 5): set N+1 is fetched while set N is still in flight (its
 * ack outstanding). A corrupt chunk in set N+1 must not let N+1 commit or be acked, and set
 * N still commits and is acked; the set after N+1 goes on. A REAL agent (in process: libp2p
 * on 127.0.0.1, SQLite, spool, worker threads) whose spool hands out one damaged chunk, and a
 * REAL puller with its store.
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Agent } from '../../src/roles/agent/agent.js'
import { resolveConfig } from '../../src/config/config.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { Catalog } from '../../src/store/core/catalog.js'
import { PACK_MAGIC, PackStore } from '../../src/store/core/packs.js'
import { Puller } from '../../src/roles/manager/puller.js'
import type { AckClient } from '../../src/protocols/ack.js'
import { chunkId, decompressChunk } from '../../src/codec/chunk-codec.js'
import { toHex } from '../../src/model/entry.js'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import { seededBytes } from '../support/trees.js'

/** How long set N's ack is held for set N+1's damaged chunk to be fetched (bounded: old serial code never fetches it meanwhile). */
const HOLD_MS = 5_000

describe('integration: pipelined sets', function () {
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

  it('a corrupt chunk in set N+1 fetched while set N is in flight: N+1 neither commits nor is acked, N commits and is acked, N+2 goes on', async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-pull-pipeline-'))
    const folder = join(root, 'docs')
    mkdirSync(folder)
    const fleetKey = newFleetKey()
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
    // three sets, one file each (incompressible, a few chunks each)
    const files = ['n.bin', 'n1.bin', 'n2.bin'].map(name => ({ name, content: seededBytes(name, 200_000) }))
    const sets: number[] = []
    for (const f of files) {
      writeFileSync(join(folder, f.name), f.content)
      await clock.advance(Math.max(0, Date.now() - clock.now() + 1))
      let round = await agent.scanNow()
      for (let i = 0; i < 3 && round.set === undefined; i++) round = await agent.scanNow()
      assert.ok(round.set !== undefined, `${f.name} staged`)
      sets.push(round.set.id)
    }
    // the agent's spool hands out set N+1's file's chunk damaged (one byte flipped): a bad disk
    // or a hostile agent; the agent cannot tell, the manager's verification must
    const damagedId = toHex(chunkId(files[1].content))
    let damagedServed: () => void = () => {}
    const served = new Promise<void>(resolve => { damagedServed = resolve })
    type Served = { rawLength: number, compressed: Uint8Array } | null
    const spool = (agent as unknown as { spool: { readChunks: (ids: Uint8Array[], signal?: AbortSignal) => AsyncGenerator<Served> } }).spool
    const readChunks = spool.readChunks.bind(spool)
    spool.readChunks = async function * (ids: Uint8Array[], signal?: AbortSignal) {
      let i = 0
      for await (const chunk of readChunks(ids, signal)) {
        const id = ids[i++]
        if (chunk === null || toHex(id) !== damagedId) { yield chunk; continue }
        const compressed = Buffer.from(chunk.compressed)
        compressed[compressed.byteLength >> 1] ^= 0x40
        damagedServed()
        yield { rawLength: chunk.rawLength, compressed }
      }
    }

    manager = await createHoldfastNode({ privateKey: managerKey, fleetKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
    catalog = new Catalog(join(root, 'catalog.db'))
    packs = new PackStore(join(root, 'packs'))
    puller = new Puller({ host: manager, catalog, packs, clock, log: silentLogger })
    // Set N's ack is slow (a busy agent): held until set N+1's damaged chunk has been served,
    // at most HOLD_MS. What the agent's state says at that moment is recorded.
    const acker = (puller as unknown as { acker: AckClient }).acker
    const ack = acker.ack.bind(acker)
    let n1FetchedWhileNInFlight = false
    const acked: number[] = []
    const c = catalog
    let nCommittedBeforeAck = false
    acker.ack = async (peer, setId, snapshotId, options) => {
      if (setId === sets[0]) {
        nCommittedBeforeAck = c.hasSnapshotFor(c.findEndpoint(agentPeer.peerId).id, setId) === snapshotId
        let timer: NodeJS.Timeout | undefined
        n1FetchedWhileNInFlight = await Promise.race([
          served.then(() => true),
          new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(false) }, HOLD_MS) })
        ])
        clearTimeout(timer)
      }
      await ack(peer, setId, snapshotId, options)
      acked.push(setId)
    }
    const status = agent.status()
    const agentPeer = { peerId: status.peerId, name: 'endpoint-1', addrs: status.listen.map(a => multiaddr(a)) }

    const result = await puller.pull(agentPeer, { rate: 0 })

    assert.ok(nCommittedBeforeAck, 'set N was committed before its ack went out')
    assert.ok(n1FetchedWhileNInFlight, `set N+1 was fetched while set N's ack was in flight (waited ${HOLD_MS} ms)`)
    assert.deepEqual(result.failedSets.map(f => [f.setId, f.code]), [[sets[1], 'CHUNK_HASH_MISMATCH']], 'N+1 failed verification')
    assert.deepEqual(result.snapshots.map(s => s.setId), [sets[0], sets[2]], 'N and N+2 committed')
    assert.deepEqual(acked, [sets[0], sets[2]], 'N and N+2 acked, in set order; N+1 never')
    const endpointId = c.findEndpoint(agentPeer.peerId).id
    assert.equal(c.hasSnapshotFor(endpointId, sets[1]), undefined, 'no snapshot of N+1')
    assert.equal(c.chunkLocation(chunkId(files[1].content)), undefined, 'the damaged chunk is not in the catalog')
    // the agent still holds N+1 (sealed, not acked); N and N+2 are gone from its spool
    assert.equal(agent.status().sealedSets, 1, 'only N+1 is left on the agent')
    // the store holds N's and N+2's bytes, exactly; the packs hold nothing else (N+1's
    // appends, if any, were cut back)
    let packed = 0
    for (const f of [files[0], files[2]]) {
      const loc = c.chunkLocation(chunkId(f.content))
      assert.ok(loc !== undefined, `${f.name} is in the store`)
      assert.ok(Buffer.from(decompressChunk(packs.read(loc), loc.rawlen)).equals(f.content), `${f.name} byte for byte`)
      packed += 40 + loc.clen
    }
    const packBytes = readdirSync(join(root, 'packs')).reduce((n, name) => n + statSync(join(root, 'packs', name)).size - PACK_MAGIC.byteLength, 0)
    assert.equal(packBytes, packed, 'no dead tail of N+1 in the packs')
  })
})
