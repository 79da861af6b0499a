/**
 * Pulls one agent's sealed staging sets into the store, in order:
 *   manifest → entries → fetch the chunks this endpoint has not sent before (paced, verified)
 *   → append to packs those the store lacks
 *   → fsync packs → commit the snapshot in the catalog → ack the agent.
 * Nothing is acked before it is durable; a failure anywhere leaves the set on the agent, to
 * be pulled again next round (chunks already committed are not fetched twice).
 * Sets overlap: set N's ack runs while set N+1 is fetched, and N+1's entries are listed while
 * N's chunks come; commits and acks stay in set order (docs/architecture.md, "pulling").
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Catalog, NewChunk } from '../../store/core/catalog.js'
import { storeWriteError, type PackStore, type PackWriter } from '../../store/core/packs.js'
import { ManifestClient, type AgentManifest } from '../../protocols/manifest.js'
import { FETCH_LIMITS, FetchClient } from '../../protocols/fetch.js'
import { AckClient } from '../../protocols/ack.js'
import type { ProtocolHost } from '../../protocols/exchange.js'
import { ChunkCheckPool, type CheckBatch, type VerifiedBatch } from '../../store/ingest/chunk-check-pool.js'
import { CHUNK_ID_BYTES, type SetSummary, type StagedEntry } from '../../model/entry.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../util/log.js'
import { HoldfastError, describeError, errorCode } from '../../util/errors.js'
import { testPausePoint } from '../../util/test-pause.js'
import { RateLimiter } from '../../util/rate-limiter.js'

export const FETCH_BATCH_IDS = 1024
/** Receipt may run this much above the share before the guard holds the agent back. */
const RECEIPT_SLACK = 1.05
/** How often one pull re-reads an agent's manifest for sets sealed while it was pulling. */
const MAX_MANIFEST_LOOKS = 16
/** Batches in verification at once: keeps both workers busy without unbounded memory. */
const VERIFY_IN_FLIGHT = 4

/** A set's entries, and the distinct chunk ids they name (in the order first named). */
interface ListedSet { entries: StagedEntry[], wanted: Map<string, Uint8Array> }

export interface PullProgress {
  peerId: string
  setId: number
  chunksDone: number
  chunksTotal: number
  bytesPulled: number
}

export interface PullResult {
  peerId: string
  manifest: AgentManifest
  snapshots: Array<{ setId: number, snapshotId: number, entries: number, chunksPulled: number, bytesPulled: number }>
  /** Sets skipped because the agent could not serve them whole (see setCannotBeServed). */
  failedSets: Array<{ setId: number, code: string, message: string }>
  bytesPulled: number
  /** The pull's time slice ran out after a set; sets may still be waiting. */
  sliced: boolean
}

export interface PullOptions {
  rate: number
  signal?: AbortSignal
  onProgress?: (p: PullProgress) => void
  onManifest?: (m: AgentManifest) => void
  /** The first manifest, when the caller has read it already (to decide whether to pull). */
  manifest?: AgentManifest
  /**
   * The pull's share of the budget, changed by the manager while it runs: each fetch batch
   * asks the agent for its current rate and sends it every change while the batch runs, so a
   * raised or lowered share reaches the agent within ~0.1 s, not at the next batch.
   */
  limiter?: RateLimiter
  /** Clock time after which the pull stops once the set in hand is committed and acked. */
  sliceEndsAt?: number
}

/** Failures that belong to one set (a chunk gone or damaged, the set gone), not to the peer. */
const SET_FAILURES = new Set(['CHUNK_MISSING', 'CHUNK_HASH_MISMATCH', 'SET_UNKNOWN', 'STORE_CORRUPT'])

function setCannotBeServed (err: unknown): boolean {
  if (!(err instanceof HoldfastError)) return false
  if (err.code === 'REMOTE_ERROR') return SET_FAILURES.has(String(err.details.remoteCode))
  return SET_FAILURES.has(err.code)
}

export interface PullerInit {
  host: ProtocolHost
  catalog: Catalog
  packs: PackStore
  clock: Clock
  log: Logger
}

export class Puller {
  private readonly manifest: ManifestClient
  private readonly fetcher: FetchClient
  private readonly acker: AckClient
  private verifier?: ChunkCheckPool

  constructor (private readonly init: PullerInit) {
    this.manifest = new ManifestClient(init.host)
    this.fetcher = new FetchClient(init.host)
    this.acker = new AckClient(init.host)
  }

  async close (): Promise<void> {
    await this.verifier?.terminate()
    this.verifier = undefined
  }

  async pull (peer: { peerId: string, name: string, addrs: Multiaddr[] }, options: PullOptions): Promise<PullResult> {
    const { catalog, clock } = this.init
    const log = this.init.log.child(peer.peerId.slice(-8))
    let manifest = options.manifest ?? await this.manifest.list(peer.addrs, { signal: options.signal })
    if (options.manifest === undefined) options.onManifest?.(manifest)
    // mDNS carries the endpoint's name; a static peer is named by its own manifest
    const endpointId = catalog.touchEndpoint(peer.peerId, peer.name !== '' ? peer.name : (manifest.name ?? ''), clock.now())
    const result: PullResult = { peerId: peer.peerId, manifest, snapshots: [], failedSets: [], bytesPulled: 0, sliced: false }
    const done = new Set<number>()
    // Sets are pipelined: a set's ack goes out while the next set is fetched, and the next
    // set's entries are listed while this one's chunks come. Acks stay in set order (each
    // waits for the one before) and each follows its set's fsync and commit; a failed ack
    // stops the pull (the set is committed: the next round acks it again).
    const stop = new AbortController()
    const signal = options.signal === undefined ? stop.signal : AbortSignal.any([options.signal, stop.signal])
    let acks: Promise<void> = Promise.resolve()
    let ackFailure: { err: unknown } | undefined
    const ackInOrder = (setId: number, snapshotId: number, acked?: () => void): void => {
      acks = acks.then(async () => {
        await this.acker.ack(peer.addrs, setId, snapshotId, { signal: options.signal })
        acked?.()
      })
      acks.catch(err => { ackFailure ??= { err }; stop.abort(err) })
    }
    try {
      // A large first backup is sealed set by set while it is staged: after the sets we knew of,
      // look again and take what was sealed meanwhile. Bounded, so that an endpoint that never
      // stops changing cannot keep the manager from the others.
      for (let look = 0; look < MAX_MANIFEST_LOOKS; look++) {
        const fresh = manifest.sets.filter(s => !done.has(s.id)).sort((a, b) => a.id - b.id)
        if (fresh.length === 0) break
        let prefetched: { setId: number, listing: Promise<ListedSet> } | undefined
        for (let i = 0; i < fresh.length; i++) {
          const set = fresh[i]
          done.add(set.id)
          const already = catalog.committedAs(endpointId, set.id)
          if (already !== undefined) {
            // committed before, but the ack was lost: say it again
            ackInOrder(set.id, already)
            continue
          }
          let pulled: PullResult['snapshots'][number]
          try {
            const listing = prefetched?.setId === set.id ? prefetched.listing : this.listEntries(peer, set, signal)
            prefetched = undefined
            const listed = await listing
            // The next set's entries come while this one's chunks do: two sets' entries at
            // most are held. Its chunks are planned only after this set commits, so the
            // store's own view decides what is fetched and nothing of it depends on this set.
            const next = fresh[i + 1]
            if (next !== undefined && catalog.committedAs(endpointId, next.id) === undefined) {
              prefetched = { setId: next.id, listing: this.listEntries(peer, next, signal) }
              prefetched.listing.catch(() => {}) // observed when its turn comes
            }
            pulled = await this.pullSet(peer, endpointId, set, listed, options, signal)
          } catch (err) {
            if (ackFailure !== undefined) throw ackFailure.err
            // A set the agent cannot serve whole must not hold back the sets after it: skip it,
            // say so, go on (the agent stages its paths again). Anything else (the peer went
            // away, we are stopping) ends this pull.
            if (!setCannotBeServed(err) || signal.aborted) throw err
            result.failedSets.push({ setId: set.id, code: errorCode(err), message: describeError(err) })
            log.warn('staged set cannot be pulled whole; skipped, the sets after it go on', { set: set.id, err: describeError(err) })
            continue
          }
          result.snapshots.push(pulled)
          result.bytesPulled += pulled.bytesPulled
          ackInOrder(set.id, pulled.snapshotId, () => {
            log.info('snapshot committed and acknowledged', { set: set.id, snapshot: pulled.snapshotId, entries: pulled.entries, chunks: pulled.chunksPulled, bytes: pulled.bytesPulled })
          })
          // the slice is over: the others' turn; what is left waits on the agent for the next one
          if (options.sliceEndsAt !== undefined && clock.now() >= options.sliceEndsAt) { result.sliced = true; break }
        }
        // every set taken so far is acked before the manifest is read again (it lists them no more)
        await acks
        manifest = await this.manifest.list(peer.addrs, { signal: options.signal })
        options.onManifest?.(manifest)
        if (result.sliced) break
      }
      await acks
    } finally {
      // no listing outlives the pull, and no ack is left running unobserved
      stop.abort()
      await acks.catch(() => {})
    }
    result.manifest = manifest
    return result
  }

  /** A set's entries and the distinct chunk ids they name, in the order first named. */
  private async listEntries (peer: { addrs: Multiaddr[] }, set: SetSummary, signal: AbortSignal): Promise<ListedSet> {
    const entries: StagedEntry[] = []
    const wanted = new Map<string, Uint8Array>()
    for await (const page of this.manifest.entries(peer.addrs, set.id, { signal })) {
      for (const e of page) {
        entries.push(e)
        for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
          const id = e.chunks.subarray(i, i + CHUNK_ID_BYTES)
          const key = Buffer.from(id).toString('latin1')
          if (!wanted.has(key)) wanted.set(key, id)
        }
      }
    }
    return { entries, wanted }
  }

  /**
   * Fetches, verifies and stores one set's chunks, fsyncs the packs and commits the snapshot
   * (the ack is the caller's, in set order).
   */
  private async pullSet (peer: { peerId: string, addrs: Multiaddr[] }, endpointId: number, set: SetSummary, listed: ListedSet, options: PullOptions, signal: AbortSignal): Promise<PullResult['snapshots'][number]> {
    // The set's own pack writer: pulls of other endpoints run beside this one, and a failure
    // here must cut back only this set's appends, never theirs (PackWriter).
    const packs = this.init.packs.acquireWriter()
    try {
      return await this.storeSet(peer, endpointId, set, listed, options, signal, packs)
    } finally {
      this.init.packs.releaseWriter(packs)
    }
  }

  private async storeSet (peer: { peerId: string, addrs: Multiaddr[] }, endpointId: number, set: SetSummary, listed: ListedSet, options: PullOptions, signal: AbortSignal, packs: PackWriter): Promise<PullResult['snapshots'][number]> {
    const { catalog, clock } = this.init
    const { entries, wanted } = listed
    // Every chunk this endpoint has not sent is fetched, stored elsewhere or not: dedup across
    // endpoints saves storage, never a fetch, so an agent can neither reference another's
    // data unseen nor learn from the request which chunks exist (docs/security.md).
    // (those another endpoint's copy stores already are verified all the same, but not stored
    // again; a pull of another endpoint that stores one meanwhile costs a dead copy in a pack,
    // as before ownership)
    const { fetch: missing, storedElsewhere } = catalog.fetchPlan(endpointId, wanted.values())
    const newChunks: NewChunk[] = []
    /** Sent and verified, but another endpoint's copy is stored already: owned, not stored again. */
    const proven: Uint8Array[] = []
    let bytesPulled = 0
    // Received chunks are copied once into a batch buffer as they arrive, verified in worker
    // threads a batch at a time, and appended to the pack in order once verified; a mismatch
    // fails the set before anything of it commits.
    this.verifier ??= new ChunkCheckPool()
    const verifier = this.verifier
    const inFlight: Array<Promise<VerifiedBatch>> = []
    const appendOldest = async (): Promise<void> => {
      const oldest = inFlight.shift()
      if (oldest === undefined) return
      const verified = await oldest
      for (let i = 0; i < verified.count; i++) {
        const chunk = verified.chunk(i)
        if (storedElsewhere.size > 0 && storedElsewhere.has(Buffer.from(chunk.id).toString('latin1'))) { proven.push(chunk.id); continue }
        const loc = packs.append(chunk.id, chunk.rawLength, chunk.compressed)
        newChunks.push({ ...loc, id: chunk.id, rawlen: chunk.rawLength })
      }
      verified.release()
    }
    let pending: CheckBatch | undefined
    const submit = async (): Promise<void> => {
      if (pending === undefined || pending.count === 0) return
      const done = verifier.verify(pending)
      done.catch(() => {}) // observed when appended; a failure must not go unhandled meanwhile
      inFlight.push(done)
      pending = undefined
      if (inFlight.length >= VERIFY_IN_FLIGHT) await appendOldest()
    }
    // The agent paces itself at the share (and hears of every change within ~0.1 s). Receipt is
    // only guarded: a slightly faster limiter with a burst of one largest frame holds back an
    // agent that ignores the rate (an old one that learns a lowered rate at the next batch)
    // without being a second pacer in series, which would cost a paced agent its share.
    const guard = options.limiter === undefined ? undefined : new RateLimiter(options.limiter.rate * RECEIPT_SLACK, clock, FETCH_LIMITS.maxChunkFrameBytes)
    try {
      for (let i = 0; i < missing.length; i += FETCH_BATCH_IDS) {
        const batch = missing.slice(i, i + FETCH_BATCH_IDS)
        const limiter = options.limiter
        const live = limiter === undefined ? undefined : { current: () => limiter.rate, clock }
        for await (const chunk of this.fetcher.fetch(peer.addrs, { setId: set.id, ids: batch, rate: limiter?.rate ?? options.rate }, { signal, rate: live, clock })) {
          if (guard !== undefined && limiter !== undefined) {
            guard.setRate(limiter.rate * RECEIPT_SLACK)
            await guard.take(chunk.compressed.byteLength + CHUNK_ID_BYTES + 9, signal)
          }
          if (pending !== undefined && !pending.fits(chunk.compressed.byteLength)) await submit()
          pending ??= verifier.batch()
          pending.add(chunk)
          bytesPulled += chunk.compressed.byteLength
        }
        options.onProgress?.({ peerId: peer.peerId, setId: set.id, chunksDone: Math.min(i + FETCH_BATCH_IDS, missing.length), chunksTotal: missing.length, bytesPulled })
      }
      await submit()
      while (inFlight.length > 0) await appendOldest()
    } catch (err) {
      // Nothing of this set is committed: cut the packs back now rather than at the next
      // restart, so a store that fails every retry (a full disk) does not fill with dead tails.
      packs.discard()
      throw storeWriteError(err)
    } finally {
      // on failure, let outstanding verifications settle before the caller moves on
      await Promise.allSettled(inFlight)
    }
    // The commit order (docs/architecture.md): pack data durable → catalog commit → ack.
    packs.sync() // a failure here has discarded what was not synced (STORE_FULL when the disk is full)
    testPausePoint('pull-packed')
    let snapshotId: number
    try {
      snapshotId = catalog.commitSnapshot({ endpointId, setId: set.id, sealedAt: set.sealedAt, committedAt: clock.now(), entries, chunks: newChunks, proven })
    } catch (err) {
      // SQLITE_FULL (13): the catalog's disk is full. The synced pack tail is cut by recovery.
      if ((err as { errcode?: unknown }).errcode === 13) throw new HoldfastError('STORE_FULL', `store full: the catalog cannot grow (${(err as Error).message}); nothing was committed`, {}, { cause: err })
      throw err
    }
    testPausePoint('pull-committed')
    return { setId: set.id, snapshotId, entries: entries.length, chunksPulled: newChunks.length, bytesPulled }
  }
}
