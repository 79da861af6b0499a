/**
 * Agents for tests: the real manifest, fetch and ack services on a real libp2p node, serving
 * one sealed set of random chunks held in memory. The drip-feeder slows only its chunk source.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import type { HoldfastNode } from '../../src/node/libp2p-node.js'
import { ManifestService } from '../../src/protocols/manifest.js'
import { FetchService, type SpooledChunk } from '../../src/protocols/fetch.js'
import { AckService } from '../../src/protocols/ack.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type SetSummary, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { systemClock } from '../../src/util/clock.js'

const CHUNK = 16 * 1024

/** An agent with one sealed set of random chunks in memory, served by the real services. */
export class MemoryAgent {
  readonly chunks = new Map<string, SpooledChunk>()
  set?: { summary: SetSummary, entries: StagedEntry[] }
  chunksServed = 0

  constructor (readonly node: HoldfastNode, files: number, chunksPerFile: number, setId = 1) {
    const entries: StagedEntry[] = []
    let stored = 0
    for (let f = 0; f < files; f++) {
      const ids: Uint8Array[] = []
      for (let c = 0; c < chunksPerFile; c++) {
        const plain = randomBytes(CHUNK)
        const compressed = compressChunk(plain)
        this.chunks.set(toHex(chunkId(plain)), { rawLength: plain.byteLength, compressed })
        stored += compressed.byteLength
        ids.push(chunkId(plain))
      }
      entries.push({ folder: 'docs', path: new Uint8Array(Buffer.from(`file${f}`)), type: 'file', mode: 0o100644, mtimeNs: 1_700_000_000_000_000_000n, size: chunksPerFile * CHUNK, chunks: new Uint8Array(Buffer.concat(ids.map(x => Buffer.from(x)))) })
    }
    this.set = { summary: { id: setId, sealedAt: 1000 + setId, entries: files, chunks: files * chunksPerFile, rawBytes: files * chunksPerFile * CHUNK, storedBytes: stored }, entries }
  }

  get peerId (): string { return this.node.peerId.toString() }

  /** The chunk source the fetch service reads from; the drip-feeder slows it. */
  protected async readChunk (id: Uint8Array): Promise<SpooledChunk | null> {
    const c = this.chunks.get(toHex(id)) ?? null
    if (c !== null) this.chunksServed++
    return c
  }

  /** The agent's own upload ceiling (0: none). */
  protected get maxRate (): number { return 0 }

  async start (): Promise<void> {
    const allow = (): boolean => true
    await new ManifestService(this.node, {
      allow,
      log: silentLogger,
      source: {
        manifest: () => ({ agentVersion: 'test', idle: true, sets: this.set === undefined ? [] : [this.set.summary] }),
        entries: (setId) => {
          if (this.set === undefined || setId !== this.set.summary.id) throw new HoldfastError('SET_UNKNOWN', `no sealed set ${setId}`)
          return this.set.entries
        }
      }
    }).start()
    await new FetchService(this.node, { allow, log: silentLogger, clock: systemClock, maxRate: this.maxRate, source: { readChunk: async id => await this.readChunk(id) } }).start()
    await new AckService(this.node, { allow, log: silentLogger, sink: { acknowledge: async () => { this.set = undefined } } }).start()
  }
}

/**
 * The real services with a slowed chunk source: each chunk is read after `delayMs`, and the
 * low upload ceiling makes the fetch service send each one as soon as it is read, so frames
 * keep arriving (no idle deadline ever fires) at far below the fetch minimum rate.
 */
export class DripFeedingAgentWithSlowedChunkSource extends MemoryAgent {
  constructor (node: HoldfastNode, chunks: number, private readonly delayMs: number) { super(node, 1, chunks) }
  protected override get maxRate (): number { return 8 * 1024 }
  protected override async readChunk (id: Uint8Array): Promise<SpooledChunk | null> {
    await delay(this.delayMs)
    return await super.readChunk(id)
  }
}

