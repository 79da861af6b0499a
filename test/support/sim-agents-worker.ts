/**
 * Many simulated agents in one process, for scale tests and bench/scale.ts: each is a real
 * libp2p node (TCP, Noise with the fleet's prologue, yamux) serving the real protocol services
 * (/holdfast/manifest, /fetch, /ack from src/protocols) to the pinned manager only. What an
 * agent stages is held in memory instead of a spool: one sealed set of a few small files,
 * chunked, hashed and compressed with the real codec, so the manager verifies and stores real
 * chunks. The ack marks the set backed up, so the next manifest lists nothing.
 *
 * argv[2]: JSON SimAgentsConfig. Prints one JSON line per node ({peerId, addr, name}), then
 * {ready:true}, then {acked:name} per first ack. Stops on SIGTERM or when stdin closes.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { ManifestService } from '../../src/protocols/manifest.js'
import { FetchService, type SpooledChunk } from '../../src/protocols/fetch.js'
import { AckService } from '../../src/protocols/ack.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { silentLogger } from '../../src/util/log.js'
import { systemClock } from '../../src/util/clock.js'
import type { StagedEntry } from '../../src/model/entry.js'

export interface SimAgentsConfig {
  fleetKey: string
  managerPeerId: string
  count: number
  /** Names are `${prefix}${index}`. */
  prefix: string
  files: number
  fileBytes: number
  /** Listen address, e.g. /ip4/127.0.0.1/tcp/0. */
  listen: string
}

/** Distinct bytes per agent and file (cheap: no hashing chain, but no two agents alike). */
function fileBytes (name: string, file: number, length: number): Buffer {
  const out = Buffer.alloc(length)
  let x = 2166136261
  for (const c of `${name}/${file}`) x = Math.imul(x ^ c.charCodeAt(0), 16777619)
  for (let i = 0; i < length; i += 4) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; out.writeUInt32LE(x >>> 0, Math.min(i, length - 4)) }
  return out
}

async function startOne (config: SimAgentsConfig, index: number): Promise<{ node: HoldfastNode, name: string }> {
  const name = `${config.prefix}${index}`
  const chunks = new Map<string, SpooledChunk>()
  const entries: StagedEntry[] = []
  let rawBytes = 0
  let storedBytes = 0
  for (let f = 0; f < config.files; f++) {
    const plain = fileBytes(name, f, config.fileBytes)
    const id = chunkId(plain)
    const compressed = compressChunk(plain)
    chunks.set(Buffer.from(id).toString('hex'), { rawLength: plain.byteLength, compressed })
    rawBytes += plain.byteLength
    storedBytes += compressed.byteLength
    entries.push({ folder: 'data', path: Buffer.from(`file-${f}.bin`), type: 'file', mode: 0o100644, mtimeNs: 1_700_000_000_000_000_000n, size: plain.byteLength, chunks: id })
  }
  const set = { id: 1, sealedAt: Date.now(), entries: entries.length, chunks: chunks.size, rawBytes, storedBytes }
  let acked = false
  const node = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey: config.fleetKey, listen: [config.listen] })
  const allow = (remote: string): boolean => remote === config.managerPeerId
  const log = silentLogger
  await new ManifestService(node, {
    allow,
    log,
    source: {
      manifest: () => ({ agentVersion: 'sim', name, idle: true, utcOffsetMinutes: 0, sets: acked ? [] : [set] }),
      entries: () => entries
    }
  }).start()
  await new FetchService(node, { allow, log, clock: systemClock, source: { readChunk: async id => chunks.get(Buffer.from(id).toString('hex')) ?? null } }).start()
  await new AckService(node, {
    allow,
    log,
    sink: {
      acknowledge: async () => {
        if (acked) return
        acked = true
        process.stdout.write(JSON.stringify({ acked: name }) + '\n')
      }
    }
  }).start()
  return { node, name }
}

async function main (): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as SimAgentsConfig
  const nodes: HoldfastNode[] = []
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    await Promise.allSettled(nodes.map(async n => { await n.stop() }))
    process.exit(0)
  }
  process.on('SIGTERM', () => { void stop() })
  process.stdin.on('end', () => { void stop() })
  process.stdin.resume()
  for (let i = 0; i < config.count; i++) {
    const { node, name } = await startOne(config, i)
    nodes.push(node)
    const addr = node.getMultiaddrs().find(a => a.toString().includes('/tcp/'))
    process.stdout.write(JSON.stringify({ name, peerId: node.peerId.toString(), addr: addr?.toString() }) + '\n')
  }
  process.stdout.write(JSON.stringify({ ready: true }) + '\n')
}

main().catch(err => { process.stderr.write(`sim agents failed: ${String(err)}\n`); process.exit(1) })
