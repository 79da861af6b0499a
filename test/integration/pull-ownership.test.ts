/**
 * Ownership before dedup, acks and history (issue 10 items 2 and 5), over the wire: REAL
 * agents (in process: libp2p on 127.0.0.1, SQLite, spool, worker threads) and a REAL puller
 * with its catalog and packs. A tampered agent is a real agent whose staged entry was
 * rewritten in its own state db, as the CLI trial did.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { Agent } from '../../src/roles/agent/agent.js'
import { resolveConfig } from '../../src/config/config.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { Catalog } from '../../src/store/core/catalog.js'
import { PackStore } from '../../src/store/core/packs.js'
import { Puller } from '../../src/roles/manager/puller.js'
import { AckClient } from '../../src/protocols/ack.js'
import { restoreSnapshot } from '../../src/store/restore.js'
import { CHUNK_ID_BYTES, toHex } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { openDatabase } from '../../src/util/sqlite.js'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import { seededBytes } from '../support/trees.js'

interface Endpoint { agent: Agent, folder: string, dataDir: string, peer: { peerId: string, name: string, addrs: Multiaddr[] }, asked: string[] }

describe('integration: ownership before dedup, acks and history over the wire', function () {
  this.timeout(180_000)
  let root = ''
  const agents: Agent[] = []
  let manager: HoldfastNode | undefined
  let catalog: Catalog | undefined
  let packs: PackStore | undefined
  let puller: Puller | undefined
  const fleetKey = newFleetKey()
  // the agents' clock only moves when the test says: their scan loops never run on their own
  const clock = new ManualClock(Date.now())

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-pull-ownership-'))
    manager = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
    catalog = new Catalog(join(root, 'catalog.db'))
    packs = new PackStore(join(root, 'packs'))
    puller = new Puller({ host: manager, catalog, packs, clock, log: silentLogger })
  })

  afterEach(async () => {
    await puller?.close()
    for (const a of agents.splice(0)) await a.stop()
    await manager?.stop()
    packs?.close()
    catalog?.close()
    manager = undefined; packs = undefined; catalog = undefined; puller = undefined
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  async function startEndpoint (name: string): Promise<Endpoint> {
    const folder = join(root, `${name}-docs`)
    mkdirSync(folder)
    const dataDir = join(root, `${name}-agent`)
    const config = resolveConfig({
      role: 'agent',
      name,
      dataDir,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      fleetKey,
      managers: [(manager as HoldfastNode).peerId.toString()],
      mdns: { enabled: false },
      adminSocket: join(root, `${name}.sock`),
      agent: { folders: [folder], settleSeconds: 0, scanIntervalSeconds: 3600, watch: 'scan', workers: 1 }
    })
    const agent = new Agent(config, clock, silentLogger)
    agents.push(agent)
    await agent.start()
    // what the manager asks this agent for, seen at the agent's own spool (the fetch service's source)
    const asked: string[] = []
    // (a batch is served through readChunks; a chunk looked up again alone, through readChunk)
    const spool = (agent as unknown as { spool: { readChunk: (id: Uint8Array) => Promise<unknown>, readChunks: (ids: Uint8Array[], signal?: AbortSignal) => AsyncGenerator<unknown> } }).spool
    const readChunks = spool.readChunks.bind(spool)
    spool.readChunks = async function * (ids: Uint8Array[], signal?: AbortSignal) { for (const id of ids) asked.push(toHex(id)); yield * readChunks(ids, signal) }
    const status = agent.status()
    return { agent, folder, dataDir, asked, peer: { peerId: status.peerId, name, addrs: status.listen.map(a => multiaddr(a)) } }
  }

  async function stage (ep: Endpoint, name: string, content: Buffer): Promise<number> {
    writeFileSync(join(ep.folder, name), content)
    await clock.advance(Math.max(0, Date.now() - clock.now() + 1))
    // the round the agent started by itself may be under way: it joins that one first
    let round = await ep.agent.scanNow()
    for (let i = 0; i < 3 && round.set === undefined; i++) round = await ep.agent.scanNow()
    assert.ok(round.set !== undefined, `${name} staged`)
    return round.set.id
  }

  function chunkIdsOf (endpointId: number): Buffer[] {
    const c = catalog as Catalog
    const ids: Buffer[] = []
    for (const e of c.treeAt(endpointId, c.latestSnapshot(endpointId) as number)) {
      for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) ids.push(Buffer.from(e.chunks.subarray(i, i + CHUNK_ID_BYTES)))
    }
    return ids
  }

  it('an endpoint that lists another endpoint\'s chunk ids is asked for them, cannot supply them, is not committed, and is never restored them', async () => {
    const a = await startEndpoint('endpoint-a')
    const b = await startEndpoint('endpoint-b')
    const secret = seededBytes('a-secret', 300_000)
    await stage(a, 'secret.bin', secret)
    const pulledA = await (puller as Puller).pull(a.peer, { rate: 0 })
    assert.equal(pulledA.snapshots.length, 1)
    const c = catalog as Catalog
    const endpointA = c.findEndpoint(a.peer.peerId).id
    const secretIds = chunkIdsOf(endpointA)
    assert.ok(secretIds.length > 0)

    const own = seededBytes('b-own', 20_000)
    await stage(b, 'notes.txt', own)
    const first = await (puller as Puller).pull(b.peer, { rate: 0 })
    assert.equal(first.snapshots.length, 1, 'B\'s honest backup')
    const endpointB = c.findEndpoint(b.peer.peerId).id

    // B stages a change, and its staged entry is rewritten to list A's chunk ids
    const tamperedSet = await stage(b, 'notes.txt', seededBytes('b-own-v2', 20_000))
    const db = openDatabase(join(b.dataDir, 'agent.db'))
    try {
      const r = db.prepare('UPDATE set_entries SET chunks = ?, size = ? WHERE set_id = ?').run(Buffer.concat(secretIds), secret.byteLength, tamperedSet)
      assert.equal(Number(r.changes), 1)
    } finally { db.close() }
    b.asked.length = 0
    const second = await (puller as Puller).pull(b.peer, { rate: 0 })

    // asked for every one of A's ids it listed, though the store holds them all: the request
    // does not say which exist
    for (const id of secretIds) assert.ok(b.asked.includes(toHex(id)), `B was asked for ${toHex(id)}`)
    assert.ok(!second.snapshots.some(s => s.setId === tamperedSet), 'the tampered set is not committed')
    assert.deepEqual(second.failedSets.filter(f => f.setId === tamperedSet).map(f => f.code), ['CHUNK_MISSING'], 'and reported')
    // no snapshot of B names A's chunks, and no restore of B hands over A's bytes
    const secretHex = new Set(secretIds.map(toHex))
    for (const snap of c.snapshots(endpointB)) {
      for (const e of c.treeAt(endpointB, snap.id)) {
        for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) assert.ok(!secretHex.has(toHex(e.chunks.subarray(i, i + CHUNK_ID_BYTES))), `snapshot ${snap.id} of B names A's chunk`)
      }
      const out = join(root, `restore-b-${snap.id}`)
      await restoreSnapshot(c, packs as PackStore, { endpointId: endpointB, snapshotId: snap.id, target: out }).catch(() => undefined)
      for (const folder of existsSync(out) ? readdirSync(out) : []) {
        const p = join(out, folder, 'notes.txt')
        if (existsSync(p)) assert.ok(!readFileSync(p).equals(secret), `restore of B's snapshot ${snap.id} returned A's secret`)
      }
    }
  })

  it('the same file on two endpoints is fetched from each (proof by sending) and stored once', async () => {
    const a = await startEndpoint('endpoint-a')
    const b = await startEndpoint('endpoint-b')
    const shared = seededBytes('shared', 300_000)
    await stage(a, 'report.pdf', shared)
    await (puller as Puller).pull(a.peer, { rate: 0 })
    const stored = (catalog as Catalog).storedBytes()
    await stage(b, 'report.pdf', shared)
    const pulledB = await (puller as Puller).pull(b.peer, { rate: 0 })
    assert.equal(pulledB.snapshots.length, 1)
    assert.ok(b.asked.length > 0, 'B was asked for the shared chunks')
    assert.equal((catalog as Catalog).storedBytes(), stored, 'stored once')
    assert.equal(pulledB.snapshots[0].chunksPulled, 0, 'nothing new in the packs')
    const c = catalog as Catalog
    const endpointB = c.findEndpoint(b.peer.peerId).id
    const out = join(root, 'restore-b')
    const summary = await restoreSnapshot(c, packs as PackStore, { endpointId: endpointB, snapshotId: c.latestSnapshot(endpointB) as number, target: out })
    assert.deepEqual(summary.errors, [])
    const folderName = readdirSync(out)[0]
    assert.ok(readFileSync(join(out, folderName, 'report.pdf')).equals(shared), 'B restored byte for byte')
  })

  it('a rogue ack (unknown set, set still staging) is refused with ACK_REFUSED and frees nothing', async () => {
    const b = await startEndpoint('endpoint-b')
    const content = seededBytes('b-file', 100_000)
    const setId = await stage(b, 'file.bin', content)
    const spoolDir = join(b.dataDir, 'spool')
    const segmentsBefore = readdirSync(spoolDir).sort()
    assert.ok(segmentsBefore.length > 0)
    const acker = new AckClient(manager as HoldfastNode)
    const refused = async (set: number, snapshot: number): Promise<void> => {
      let err: unknown
      try { await acker.ack(b.peer.addrs, set, snapshot) } catch (e) { err = e }
      assert.ok(err instanceof HoldfastError && err.code === 'REMOTE_ERROR' && err.details.remoteCode === 'ACK_REFUSED', `ack of set ${set} refused: ${String(err)}`)
    }
    await refused(setId + 1000, 1) // a set the agent never had
    // a set still being staged (made here as a crashed-then-restarted agent would not have it)
    const db = openDatabase(join(b.dataDir, 'agent.db'))
    let staging = 0
    try {
      staging = Number(db.prepare("INSERT INTO sets (state, created_at) VALUES ('staging', ?)").run(clock.now()).lastInsertRowid)
    } finally { db.close() }
    await refused(staging, 2)
    const check = openDatabase(join(b.dataDir, 'agent.db'))
    try {
      assert.equal(check.prepare('SELECT state FROM sets WHERE id = ?').get(staging)?.state, 'staging', 'the staging set is untouched')
    } finally { check.close() }
    assert.equal(b.agent.status().sealedSets, 1, 'the sealed set is still waiting')
    assert.deepEqual(readdirSync(spoolDir).sort(), segmentsBefore, 'no spool segment freed')
    // the real pull still gets it whole
    const pulled = await (puller as Puller).pull(b.peer, { rate: 0 })
    assert.deepEqual(pulled.snapshots.map(s => s.setId), [setId])
    assert.equal(b.agent.status().sealedSets, 0)
  })

  it('a set re-sent with other content under a committed set id re-acks and never changes the committed snapshot', async () => {
    const b = await startEndpoint('endpoint-b')
    const v1 = seededBytes('v1', 100_000)
    const first = await stage(b, 'doc.bin', v1)
    const pulled = await (puller as Puller).pull(b.peer, { rate: 0 })
    assert.deepEqual(pulled.snapshots.map(s => s.setId), [first])
    const c = catalog as Catalog
    const endpointB = c.findEndpoint(b.peer.peerId).id
    const snapshot = pulled.snapshots[0].snapshotId
    const before = [...c.treeAt(endpointB, snapshot)].map(e => [e.path.toString(), toHex(e.chunks), e.size])
    const stored = c.storedBytes()

    // the agent stages other content, then claims it is the committed set (renumbered in its state db)
    const v2 = seededBytes('v2', 120_000)
    const second = await stage(b, 'doc.bin', v2)
    const db = openDatabase(join(b.dataDir, 'agent.db'))
    try {
      db.exec('BEGIN')
      db.prepare('DELETE FROM sets WHERE id = ?').run(first)
      db.prepare('UPDATE sets SET id = ? WHERE id = ?').run(first, second)
      for (const table of ['set_entries', 'spool_chunks', 'files']) db.prepare(`UPDATE ${table} SET set_id = ? WHERE set_id = ?`).run(first, second)
      db.exec('COMMIT')
    } finally { db.close() }
    const again = await (puller as Puller).pull(b.peer, { rate: 0 })
    assert.deepEqual(again.snapshots, [], 'nothing new committed')
    assert.deepEqual(c.snapshots(endpointB).map(s => s.id), [snapshot], 'still the one snapshot')
    assert.deepEqual([...c.treeAt(endpointB, snapshot)].map(e => [e.path.toString(), toHex(e.chunks), e.size]), before, 'its versions unchanged')
    assert.equal(c.storedBytes(), stored, 'nothing stored')
    const out = join(root, 'restore')
    await restoreSnapshot(c, packs as PackStore, { endpointId: endpointB, snapshotId: snapshot, target: out })
    assert.ok(readFileSync(join(out, readdirSync(out)[0], 'doc.bin')).equals(v1), 'restores the first content byte for byte')
  })
})
