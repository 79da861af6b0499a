/**
 * What the manager knows of the peers it has found: where to dial them, what they said of
 * themselves, and how their backups are going. Fed by discovery; read by the scheduler and
 * the peer list.
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import type { DiscoveredPeer } from '../../node/discovery.js'

export interface PeerRecord {
  peerId: string
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
  nextAttemptAt: number
}

export class PeerTable {
  private readonly peers = new Map<string, PeerRecord>()

  upsert (found: DiscoveredPeer, now: number): PeerRecord {
    const existing = this.peers.get(found.peerId)
    if (existing !== undefined) {
      existing.addrs = found.addrs
      if (found.source === 'mdns' || existing.source === 'static') {
        existing.role = found.role === 'node' && existing.role !== 'node' ? existing.role : found.role
        existing.version = found.version || existing.version
        existing.name = found.name || existing.name
        existing.source = found.source
      }
      existing.lastSeen = now
      return existing
    }
    const record: PeerRecord = { ...found, firstSeen: now, lastSeen: now, failures: 0, nextAttemptAt: 0 }
    this.peers.set(found.peerId, record)
    return record
  }

  get (peerId: string): PeerRecord | undefined { return this.peers.get(peerId) }

  all (): PeerRecord[] { return [...this.peers.values()].sort((a, b) => a.firstSeen - b.firstSeen || a.peerId.localeCompare(b.peerId)) }

  agents (): PeerRecord[] { return this.all().filter(p => p.role === 'agent') }
}
