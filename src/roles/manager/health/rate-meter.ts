/**
 * The receive rate of each running pull, from the puller's progress reports: bytes over a
 * short sliding window, so `holdfast peers` shows what flows now, not the budget's target.
 */
import type { PullProgress } from '../puller.js'

/** Long enough to smooth a fetch batch's burst, short enough to show a rebalance. */
const WINDOW_MS = 5_000
/** Samples kept per peer: progress comes per fetch batch, a handful a second. */
const MAX_SAMPLES = 256

interface PeerMeter { setId: number, lastBytes: number, samples: Array<{ at: number, bytes: number }> }

export class RateMeter {
  private readonly peers = new Map<string, PeerMeter>()

  constructor (private readonly now: () => number) {}

  record (p: PullProgress): void {
    const m = this.peers.get(p.peerId) ?? { setId: p.setId, lastBytes: 0, samples: [] }
    this.peers.set(p.peerId, m)
    // bytesPulled counts from 0 for each set
    if (m.setId !== p.setId) { m.setId = p.setId; m.lastBytes = 0 }
    const delta = Math.max(0, p.bytesPulled - m.lastBytes)
    m.lastBytes = p.bytesPulled
    m.samples.push({ at: this.now(), bytes: delta })
    if (m.samples.length > MAX_SAMPLES) m.samples.splice(0, m.samples.length - MAX_SAMPLES)
  }

  /** Bytes per second over the last few seconds (0 when nothing came). */
  rate (peerId: string): number {
    const m = this.peers.get(peerId)
    if (m === undefined) return 0
    const now = this.now()
    m.samples = m.samples.filter(s => now - s.at <= WINDOW_MS)
    if (m.samples.length === 0) { this.peers.delete(peerId); return 0 }
    const bytes = m.samples.reduce((n, s) => n + s.bytes, 0)
    return Math.round(bytes / (WINDOW_MS / 1000))
  }

  /** The pull ended: what it did is history. */
  end (peerId: string): void { this.peers.delete(peerId) }
}
