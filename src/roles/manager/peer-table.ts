/**
 * What the manager knows of the peers it has found: where to dial them, what they said of
 * themselves, and how their backups are going. Fed by discovery; read by the scheduler and
 * the peer list. Also decides when a peer is tried again after a failure (`recordFailure`).
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import type { DiscoveredPeer } from '../../node/discovery.js'

export interface PeerRecord {
  peerId: string
  /** Dialable addresses, most recently announced first; stale ones expire (see PeerTable). */
  addrs: Multiaddr[]
  role: DiscoveredPeer['role']
  version: string
  name: string
  source: DiscoveredPeer['source']
  firstSeen: number
  lastSeen: number
  lastContact?: number
  lastBackup?: number
  pendingBytes?: number
  pendingSets?: number
  lastError?: string
  /** Consecutive failed rounds, for backoff. */
  failures: number
  /** What the last failure was (meaningful while failures > 0): the peer list tells offline from erring. */
  lastFailure?: FailureKind
  nextAttemptAt: number
}

/** Why a pull failed: the scheduler treats the two very differently. */
export type FailureKind =
  /** No conversation happened (dial refused, reset, timed out): the peer may have moved or be asleep. */
  | 'unreachable'
  /** The peer answered and then something went wrong (protocol, data). */
  | 'error'
  /** The manager's own fault (its store is full): not the peer's, so no growing backoff. */
  | 'local'

/** First retry after a peer could not be reached: soon, since a restarted agent is back in seconds. */
export const UNREACHABLE_FIRST_RETRY_MS = 2_000
/** Errors of the conversation itself back off up to this; retrying a broken exchange often helps no one. */
export const MAX_ERROR_BACKOFF_MS = 60 * 60_000

export interface PeerTableOptions {
  /**
   * An mDNS address not announced again within this long is dropped: a restarted agent
   * listens elsewhere, and its old address would only fail. Static addresses never expire.
   */
  addressTtlMs: number
}

export interface UpsertResult {
  record: PeerRecord
  isNew: boolean
  /** An address the table did not hold: the peer may have restarted or moved. */
  newAddress: boolean
}

interface AddressSeen { addr: Multiaddr, seenAt: number, static: boolean }

export class PeerTable {
  private readonly peers = new Map<string, PeerRecord>()
  private readonly seen = new Map<string, Map<string, AddressSeen>>()

  constructor (private readonly options: PeerTableOptions = { addressTtlMs: 10 * 60_000 }) {}

  upsert (found: DiscoveredPeer, now: number): UpsertResult {
    const addrs = this.seen.get(found.peerId) ?? new Map<string, AddressSeen>()
    this.seen.set(found.peerId, addrs)
    let newAddress = false
    for (const addr of found.addrs) {
      const key = addr.toString()
      const before = addrs.get(key)
      if (before === undefined) newAddress = true
      addrs.set(key, { addr, seenAt: now, static: found.source === 'static' || before?.static === true })
    }
    const existing = this.peers.get(found.peerId)
    if (existing !== undefined) {
      if (found.source === 'mdns' || existing.source === 'static') {
        existing.role = found.role === 'node' && existing.role !== 'node' ? existing.role : found.role
        existing.version = found.version || existing.version
        existing.name = found.name || existing.name
        existing.source = found.source
      }
      existing.lastSeen = now
      if (newAddress) {
        // A fresh record is the best news a backed-off peer can give: due now, and back to the
        // first step of its backoff (still counted as failing, so an early wake pulls it).
        existing.failures = Math.min(existing.failures, 1)
        existing.nextAttemptAt = 0
      }
      this.refreshAddrs(existing, now)
      return { record: existing, isNew: false, newAddress }
    }
    const record: PeerRecord = { ...found, addrs: [], firstSeen: now, lastSeen: now, failures: 0, nextAttemptAt: 0 }
    this.peers.set(found.peerId, record)
    this.refreshAddrs(record, now)
    return { record, isNew: true, newAddress }
  }

  /** The peer said goodbye for these addresses (mDNS TTL 0), or they are known to be dead. */
  forget (peerId: string, addrs: Multiaddr[]): void {
    const seen = this.seen.get(peerId)
    const record = this.peers.get(peerId)
    if (seen === undefined || record === undefined) return
    for (const addr of addrs) {
      const s = seen.get(addr.toString())
      if (s !== undefined && !s.static) seen.delete(addr.toString())
    }
    record.addrs = order(seen)
  }

  /**
   * An admin removed a static peer: its static addresses go (those given, or all), and a peer
   * that then has no address and was never announced over mDNS goes with them. True when the
   * table held any of it.
   */
  dropStatic (peerId: string, addrs?: Multiaddr[]): boolean {
    const seen = this.seen.get(peerId)
    const record = this.peers.get(peerId)
    if (seen === undefined || record === undefined) return false
    const keys = addrs === undefined ? undefined : new Set(addrs.map(String))
    let dropped = false
    for (const [key, s] of seen) {
      if (s.static && (keys === undefined || keys.has(key))) { seen.delete(key); dropped = true }
    }
    record.addrs = order(seen)
    if (seen.size === 0 && record.source === 'static') {
      this.peers.delete(peerId)
      this.seen.delete(peerId)
    }
    return dropped
  }

  /** Drops every peer's mDNS addresses not announced within the TTL. */
  expire (now: number): void {
    for (const record of this.peers.values()) this.refreshAddrs(record, now)
  }

  /**
   * Counts a failed pull and sets when to try again. A peer that could not be reached is
   * retried soon and never less often than the pull interval: a crash, reboot or laptop lid
   * must not cost it hours of backups. A failed conversation backs off exponentially.
   */
  recordFailure (record: PeerRecord, kind: FailureKind, now: number, intervalMs: number): number {
    record.failures++
    record.lastFailure = kind
    const n = Math.min(record.failures - 1, 20)
    const delay = kind === 'local'
      ? intervalMs
      : kind === 'unreachable'
      ? Math.min(Math.max(intervalMs, UNREACHABLE_FIRST_RETRY_MS), UNREACHABLE_FIRST_RETRY_MS * 2 ** n)
      : Math.min(MAX_ERROR_BACKOFF_MS, intervalMs * 2 ** n)
    record.nextAttemptAt = now + delay
    return delay
  }

  /** The earliest time a peer waiting out a failure is due again, if any is waiting. */
  nextRetryAt (): number | undefined {
    let at: number | undefined
    for (const p of this.peers.values()) if (p.role === 'agent' && p.failures > 0 && (at === undefined || p.nextAttemptAt < at)) at = p.nextAttemptAt
    return at
  }

  get (peerId: string): PeerRecord | undefined { return this.peers.get(peerId) }

  all (): PeerRecord[] { return [...this.peers.values()].sort((a, b) => a.firstSeen - b.firstSeen || a.peerId.localeCompare(b.peerId)) }

  agents (): PeerRecord[] { return this.all().filter(p => p.role === 'agent') }

  private refreshAddrs (record: PeerRecord, now: number): void {
    const seen = this.seen.get(record.peerId)
    if (seen === undefined) return
    // the newest address stays even when old: with nothing fresher, it is still the best guess
    const newest = [...seen.values()].filter(s => !s.static).sort((a, b) => b.seenAt - a.seenAt)[0]?.addr.toString()
    for (const [key, s] of seen) if (!s.static && key !== newest && now - s.seenAt > this.options.addressTtlMs) seen.delete(key)
    record.addrs = order(seen)
  }
}

/** Most recently announced first: the likeliest to be where the peer listens now. */
function order (seen: Map<string, AddressSeen>): Multiaddr[] {
  return [...seen.values()].sort((a, b) => b.seenAt - a.seenAt).map(s => s.addr)
}
