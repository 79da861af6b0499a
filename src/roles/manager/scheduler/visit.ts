/**
 * One scheduled visit of an agent: read its manifest (telling it the windows the manager
 * applies), decide whether it may upload now (admission.ts), and pull at the share the budget
 * gives it, until done or its time slice ends.
 */
import type { AgentManifest, ManifestClient } from '../../../protocols/manifest.js'
import { describeError, isHoldfastError, type HoldfastErrorCode } from '../../../util/errors.js'
import { classifyPullFailure } from '../failure-kind.js'
import type { Logger } from '../../../util/log.js'
import type { Clock } from '../../../util/clock.js'
import type { PeerRecord } from '../peer-table.js'
import type { Puller, PullProgress, PullResult } from '../puller.js'
import { admit, effectiveWindows, type AdmissionPolicy, type ManagerWindows } from './admission.js'
import type { VisitContext, VisitFn, VisitOutcome } from './scheduler.js'

export interface PullVisitInit {
  manifests: ManifestClient
  puller: Puller
  clock: Clock
  log: Logger
  windows: ManagerWindows
  policy: AdmissionPolicy
  /**
   * Runs the pull itself (the manager holds its store's read lock around it). The signal, if
   * given, cuts the pull (prune waited longer than its bound: LOCK_PREEMPTED).
   */
  around?: <T>(fn: (signal?: AbortSignal) => Promise<T>) => Promise<T>
  /** The peer broke a protocol limit (see PEER_VIOLATIONS): the manager hangs up on it. */
  onViolation?: (peer: PeerRecord, code: HoldfastErrorCode) => Promise<void>
  onManifest?: (peer: PeerRecord, manifest: AgentManifest) => void
  /**
   * Every contact, after the manifest and before admission (windows do not hold it back):
   * the manager sends the agent its central config here when the agent's is out of date.
   * Must not throw; bounded by the visit's signal.
   */
  onContact?: (peer: PeerRecord, manifest: AgentManifest, signal: AbortSignal) => Promise<void>
  onPulled?: (peer: PeerRecord, result: PullResult) => void
  onProgress?: (p: PullProgress) => void
}

/**
 * Failures that mean the peer broke a protocol's limits (too slow, too large, malformed, too
 * many streams): it is disconnected and backed off as an error, whatever carried the failure.
 */
export const PEER_VIOLATIONS: ReadonlySet<HoldfastErrorCode> = new Set<HoldfastErrorCode>(['TRANSFER_TOO_SLOW', 'FRAME_TOO_LARGE', 'FRAME_MALFORMED', 'CHUNK_TOO_LARGE', 'TOO_MANY_STREAMS'])

export function createPullVisit (init: PullVisitInit): VisitFn {
  const around = init.around ?? (async <T>(fn: (signal?: AbortSignal) => Promise<T>) => await fn())
  return async (peer: PeerRecord, ctx: VisitContext): Promise<VisitOutcome> => {
    // only the manager's own windows travel to the agent; what the agent set it knows
    const configured = init.windows.endpoints.get(peer.peerId) ?? init.windows.endpoints.get(peer.name) ?? init.windows.default
    let manifest: AgentManifest
    try {
      manifest = await init.manifests.list(peer.addrs, { signal: ctx.signal, windows: configured?.spec })
    } catch (err) {
      // no conversation: the peer was not there (restarted elsewhere, asleep, off)
      return { kind: 'failed', failure: ctx.signal.aborted ? 'error' : 'unreachable', error: describeError(err) }
    }
    init.onManifest?.(peer, manifest)
    await init.onContact?.(peer, manifest, ctx.signal)
    const now = init.clock.now()
    const decision = admit({ manifest, windows: effectiveWindows(peer, manifest, init.windows, init.log), now, lastGoodAt: ctx.lastGoodAt, firstSeen: peer.firstSeen, policy: init.policy, forced: ctx.forced })
    if (!decision.pull) return { kind: 'skipped', reason: decision.reason, detail: decision.detail, nothingPending: manifest.sets.length === 0 }
    ctx.setMode(decision.mode)
    ctx.share.setFraction(decision.fraction)
    let lockSignal: AbortSignal | undefined
    try {
      const result = await around(async (cut) => {
        lockSignal = cut
        return await init.puller.pull(peer, {
        rate: ctx.limiter.rate,
        limiter: ctx.limiter,
        manifest,
          sliceEndsAt: ctx.sliceEndsAt,
          signal: cut === undefined ? ctx.signal : AbortSignal.any([ctx.signal, cut]),
          onProgress: init.onProgress,
          onManifest: m => init.onManifest?.(peer, m)
        })
      })
      init.onPulled?.(peer, result)
      // A set the agent could not serve whole was skipped (the rest were pulled): the peer list
      // says so until a pull goes clean, so a stuck set is never silent.
      const failed = result.failedSets
      const warning = failed.length === 0 ? undefined : `${failed.length} staged set(s) skipped (set ${failed[0].setId}: ${failed[0].message}); the agent re-stages what it can`
      return { kind: 'pulled', mode: decision.mode, more: result.sliced, bytesPulled: result.bytesPulled, snapshots: result.snapshots.length, detail: result, warning }
    } catch (err) {
      // A full store is the manager's fault, retried at the plain interval; a connection that
      // died under the pull (a link cut) is retried soon, like a peer that was not there.
      // Prune cut the pull (it waited past its bound): not the peer's fault, retried at the interval.
      if (lockSignal?.aborted === true && !ctx.signal.aborted) return { kind: 'failed', failure: 'local', error: describeError(lockSignal.reason), code: 'LOCK_PREEMPTED' }
      const code = isHoldfastError(err) ? err.code : undefined
      if (code !== undefined && PEER_VIOLATIONS.has(code) && !ctx.signal.aborted) {
        init.log.warn('peer broke a protocol limit; hanging up and backing off', { peer: peer.peerId, err: describeError(err) })
        await init.onViolation?.(peer, code)
        return { kind: 'failed', failure: 'error', error: describeError(err), code }
      }
      const failure = isHoldfastError(err, 'STORE_FULL') ? 'local' : classifyPullFailure(err, true, ctx.signal.aborted)
      return { kind: 'failed', failure, error: describeError(err), code }
    }
  }
}
