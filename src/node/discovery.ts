/**
 * Finding peers: mDNS (bonjour-service) advertises `_holdfast._tcp` with a TXT record and
 * browses for it; static peers from the config are the fallback where multicast does not pass.
 * Both feed one callback with dialable peer records, so the peer table does not care where a
 * peer came from.
 */
import { Bonjour, type Browser, type Service } from 'bonjour-service'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { networkInterfaces } from 'node:os'
import { peerIdFromString } from '@libp2p/peer-id'
import { isIP } from 'node:net'
import type { Clock } from '../util/clock.js'
import type { Logger } from '../util/log.js'
import type { Role } from '../config/config.js'

export const MDNS_SERVICE_TYPE = 'holdfast'
export const DISCOVERY_PROTOCOL_VERSION = '1'

export interface DiscoveredPeer {
  peerId: string
  addrs: Multiaddr[]
  role: Role | 'node'
  version: string
  name: string
  source: 'mdns' | 'static'
}

export interface AdvertiseInfo {
  peerId: string
  role: Role | 'node'
  version: string
  name: string
  port: number
  fleetTag: string
}

export interface DiscoveryInit {
  self: AdvertiseInfo
  mdns: boolean
  queryIntervalMs: number
  staticPeers: string[]
  onPeer: (peer: DiscoveredPeer) => void
  /** The peer said goodbye (or its record expired) for these addresses. */
  onPeerGone?: (peer: { peerId: string, addrs: Multiaddr[] }) => void
  clock: Clock
  log: Logger
}

/** How long a probe listens for another answer to our name (RFC 6762 §8.1: three queries 250 ms apart). */
const PROBE_QUERIES = 3
const PROBE_SPACING_MS = 250
/** Names tried after a conflict, "holdfast-<id> (2)" … (RFC 6762 §9), before waiting out the stale record. */
const MAX_NAME_TRIES = 8
/** Longest TTL of the records that claim a name (SRV, 120 s): a stale claimant is gone by then. */
const STALE_RECORD_WAIT_MS = 120_000
/** How often the host's addresses are compared, to announce again when they change (a link back up). */
const INTERFACE_CHECK_MS = 1_000
/** A burst of dial failures asks the network again at most this often. */
const MIN_REQUERY_SPACING_MS = 1_000

interface MdnsRecord { name: string }
interface MdnsPacket { answers?: MdnsRecord[], additionals?: MdnsRecord[] }
/** The part of multicast-dns (inside bonjour-service) a probe needs. */
interface MdnsSocket {
  query: (name: string, type: string, cb?: (err?: unknown) => void) => void
  on: (event: 'response', fn: (packet: MdnsPacket) => void) => void
  removeListener: (event: 'response', fn: (packet: MdnsPacket) => void) => void
}

export class Discovery {
  private bonjour?: Bonjour
  private browser?: Browser
  private readonly controller = new AbortController()
  private mdnsActive = false
  private lastRequery = 0
  private publishedName?: string

  constructor (private readonly init: DiscoveryInit) {}

  get mdnsEnabled (): boolean { return this.mdnsActive }

  start (): void {
    for (const text of this.init.staticPeers) this.addStatic(text)
    if (!this.init.mdns) {
      this.init.log.info('mDNS discovery is off; using static peers only', { staticPeers: this.init.staticPeers.length })
      return
    }
    try {
      this.bonjour = new Bonjour({}, (err: unknown) => {
        this.init.log.warn('mDNS failed; discovery continues with static peers only', { err: String(err) })
        this.stopMdns()
      })
      this.browser = this.bonjour.find({ type: MDNS_SERVICE_TYPE, protocol: 'tcp' }, service => { this.onRecord(service) })
      this.browser.on('txt-update', (service: Service) => { this.onRecord(service) })
      this.browser.on('srv-update', (service: Service) => { this.onRecord(service) })
      this.browser.on('down', (service: Service) => { this.onServiceDown(service) })
      this.mdnsActive = true
      void this.announceLoop()
      void this.requeryLoop()
      void this.interfaceLoop()
    } catch (err) {
      this.init.log.warn('mDNS could not start; discovery continues with static peers only', { err: String(err) })
      this.stopMdns()
    }
  }

  /**
   * A static peer (from the config, or added by an admin at runtime): fed to the peer table as
   * an agent at that address, which never expires. Returns its peer id, or undefined (logged)
   * when the text is not a dialable multiaddr with /p2p/<peer id>.
   */
  addStatic (text: string): string | undefined {
    try {
      const ma = multiaddr(text)
      const peerId = ma.getComponents().find(c => c.name === 'p2p')?.value
      if (peerId === undefined) { this.init.log.warn('static peer has no /p2p/<peer id>; ignored', { addr: text }); return }
      this.init.onPeer({ peerId, addrs: [ma], role: 'agent', version: '', name: '', source: 'static' })
      return peerId
    } catch (err) {
      this.init.log.warn('static peer is not a valid multiaddr; ignored', { addr: text, err: String(err) })
    }
  }

  /** The instance name we announce under, once a probe has claimed one. */
  get announcedName (): string | undefined { return this.publishedName }

  /**
   * Asks the network again now (a dial failed: the peer may have restarted elsewhere). A
   * burst of failures sends one query.
   */
  requery (): void {
    if (!this.mdnsActive) return
    const now = this.init.clock.now()
    if (now - this.lastRequery < MIN_REQUERY_SPACING_MS) return
    this.lastRequery = now
    try { this.browser?.update() } catch (err) { this.init.log.debug('mDNS re-query failed', { err: String(err) }) }
  }

  stop (): void {
    this.controller.abort()
    this.stopMdns()
  }

  private stopMdns (): void {
    this.mdnsActive = false
    try { this.browser?.stop() } catch {}
    try { this.bonjour?.unpublishAll() } catch {}
    try { this.bonjour?.destroy() } catch {}
    this.browser = undefined
    this.bonjour = undefined
  }

  /**
   * Claims an instance name and announces it. bonjour-service's own probe, on hearing another
   * answer for the name, logs an Error with its stack and silently gives up; after a crash the
   * answer is often our own stale record (a cache, a sleep proxy, the old process not yet
   * gone), so we probe ourselves and, on a conflict, take the next name as RFC 6762 §9 says,
   * then after the stale record's TTL start over from the plain name.
   */
  private async announceLoop (): Promise<void> {
    const signal = this.controller.signal
    const base = `holdfast-${this.init.self.peerId.slice(-16)}`
    while (!signal.aborted && this.mdnsActive) {
      for (let i = 1; i <= MAX_NAME_TRIES; i++) {
        const name = i === 1 ? base : `${base} (${i})`
        let taken: boolean
        try {
          taken = await this.probe(name, signal)
        } catch {
          return // stopping
        }
        if (signal.aborted || !this.mdnsActive) return
        if (!taken) {
          this.publish(name)
          return
        }
        this.init.log.info('mDNS name is answered by another record (a stale one of ours after a restart?); trying the next', { name })
      }
      this.init.log.warn('every mDNS name tried is in use; waiting for stale records to expire', { tries: MAX_NAME_TRIES, waitSeconds: STALE_RECORD_WAIT_MS / 1000 })
      try { await this.init.clock.sleep(STALE_RECORD_WAIT_MS, signal) } catch { return }
    }
  }

  /** True when another responder answers for `name` within the probe window. */
  private async probe (name: string, signal: AbortSignal): Promise<boolean> {
    const mdns = this.mdnsSocket()
    if (mdns === undefined) return false
    // the same name bonjour-service will build (dots are not allowed inside the label)
    const fqdn = `${name.split('.').join('-')}._${MDNS_SERVICE_TYPE}._tcp.local`.toLowerCase()
    let taken = false
    const onResponse = (packet: MdnsPacket): void => {
      for (const rr of [...(packet.answers ?? []), ...(packet.additionals ?? [])]) {
        if (typeof rr.name === 'string' && rr.name.toLowerCase() === fqdn) taken = true
      }
    }
    mdns.on('response', onResponse)
    try {
      for (let i = 0; i < PROBE_QUERIES && !taken; i++) {
        mdns.query(fqdn, 'ANY', (err?: unknown) => { if (err !== undefined && err !== null) this.init.log.debug('mDNS probe query failed', { err: String(err) }) })
        await this.init.clock.sleep(PROBE_SPACING_MS, signal)
      }
    } finally {
      mdns.removeListener('response', onResponse)
    }
    return taken
  }

  private publish (name: string): void {
    const self = this.init.self
    const service = this.bonjour?.publish({
      name,
      type: MDNS_SERVICE_TYPE,
      protocol: 'tcp',
      port: self.port,
      // The SRV target and the A/AAAA records are owned by this host name. bonjour-service
      // defaults it to os.hostname(), which has no `.local` and is the same for every daemon on
      // one machine (or for cloned machines): a DNS-SD client then resolves every instance to
      // every such daemon's addresses. A name of our own claimed instance is unique on the link.
      host: mdnsHostName(name),
      // probed above; bonjour-service's probe would only log a stack and give up
      probe: false,
      txt: { peer: self.peerId, role: self.role, pv: DISCOVERY_PROTOCOL_VERSION, ver: self.version, name: self.name.slice(0, 60), fleet: self.fleetTag, port: String(self.port) }
    })
    service?.on('error', (err: unknown) => { this.init.log.warn('mDNS announcement failed', { name, err: String(err) }) })
    this.publishedName = name
    this.init.log.info('announcing over mDNS', { name, port: self.port })
  }

  /**
   * Announces again when the host's addresses change: a cable plugged back in, a laptop
   * woken on another network. (The OS lists an interface's addresses only while it is up.)
   */
  private async interfaceLoop (): Promise<void> {
    const signal = this.controller.signal
    let last = addressSignature()
    while (!signal.aborted && this.mdnsActive) {
      try { await this.init.clock.sleep(INTERFACE_CHECK_MS, signal) } catch { return }
      const now = addressSignature()
      if (now === last) continue
      last = now
      const name = this.publishedName
      if (name === undefined || this.bonjour === undefined) continue
      this.init.log.info('network addresses changed; announcing again', { name, addresses: now })
      // A goodbye, then a fresh announcement (with the A records of the addresses we have
      // now). bonjour-service tells its browsers nothing of an announcement that repeats
      // records they hold, so without the goodbye a manager that lost us would not hear that
      // we are back until it asked again; this way it sees us come up and pulls at once.
      this.bonjour.unpublishAll(() => {
        if (!signal.aborted && this.mdnsActive && this.publishedName === name) this.publish(name)
      })
    }
  }

  /** bonjour-service keeps its multicast socket private; the probe needs to query on it. */
  private mdnsSocket (): MdnsSocket | undefined {
    const server = (this.bonjour as unknown as { server?: { mdns?: Partial<MdnsSocket> } } | undefined)?.server
    const mdns = server?.mdns
    if (typeof mdns?.query !== 'function' || typeof mdns.on !== 'function' || typeof mdns.removeListener !== 'function') return undefined
    return mdns as MdnsSocket
  }

  /** Re-asks on a slow timer so a peer whose announcement was missed is still found. */
  private async requeryLoop (): Promise<void> {
    const signal = this.controller.signal
    while (!signal.aborted && this.mdnsActive) {
      try {
        await this.init.clock.sleep(this.init.queryIntervalMs, signal)
      } catch {
        return
      }
      try { this.browser?.update() } catch (err) { this.init.log.debug('mDNS re-query failed', { err: String(err) }) }
    }
  }

  private onServiceDown (service: Service): void {
    const check = peerFromRecord(service, this.init.self)
    if (!check.ok) return
    this.init.onPeerGone?.({ peerId: check.peer.peerId, addrs: check.peer.addrs })
  }

  /**
   * The record path: every mDNS record heard goes through here (and tests feed synthesized
   * ones). It only checks and forwards; what is kept, and how much, is the peer table's
   * business (bounded there).
   */
  onRecord (service: ServiceRecordView): void {
    const check = peerFromRecord(service, this.init.self)
    if (!check.ok) {
      if (!check.ignored) this.init.log.debug('dropping a malformed mDNS record', { reason: check.reason })
      return
    }
    this.init.onPeer(check.peer)
  }
}

/** The `.local` host name that owns an instance's address records (RFC 6762: letters, digits, hyphens). */
export function mdnsHostName (instanceName: string): string {
  return `${instanceName.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63)}.local`
}

/** The host's non-loopback addresses, as one comparable string. */
function addressSignature (): string {
  const out: string[] = []
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) if (!a.internal) out.push(`${name}/${a.address}`)
  }
  return out.sort().join(' ')
}

/** What of a bonjour-service Service the record check reads (all of it untrusted). */
export interface ServiceRecordView {
  txt?: unknown
  port?: unknown
  addresses?: unknown
  referer?: { address?: unknown } | undefined
}

/**
 * A record turned into a peer, or why not. `ignored` marks records that are fine but not for
 * us (our own, another fleet's), so they are not logged as malformed.
 */
export type RecordCheck =
  | { ok: true, peer: DiscoveredPeer }
  | { ok: false, ignored: boolean, reason: string }

/** Limits on what a TXT record may carry (a TXT string is at most 255 bytes anyway). */
export const RECORD_LIMITS = Object.freeze({
  maxPeerIdChars: 128,
  maxVersionChars: 64,
  maxNameChars: 255,
  /** Addresses taken from one record; the rest are not dialled. */
  maxAddrs: 16
})

const ROLES: ReadonlySet<string> = new Set(['agent', 'manager', 'node'])
/** No control characters and no lone surrogates (they break logs and the peer list). */
const PRINTABLE = /^[^\p{Cc}\p{Cs}]*$/u

function printable (value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length <= max && PRINTABLE.test(value)
}

/**
 * Checks an mDNS record field by field and makes the peer it announces: the peer id parses as
 * a libp2p peer id, the role is one we know, version and name are short printable text, the
 * port is 1..65535 and every address is an IP. A record of ours or of another fleet is
 * ignored; anything else wrong drops the record. Pure: the caller logs.
 */
export function peerFromRecord (service: ServiceRecordView, self: { peerId: string, fleetTag: string }): RecordCheck {
  const bad = (reason: string): RecordCheck => ({ ok: false, ignored: false, reason })
  if (typeof service !== 'object' || service === null) return bad('not a service record')
  const txt = service.txt
  if (typeof txt !== 'object' || txt === null || Array.isArray(txt)) return bad('no TXT record')
  const t = txt as Record<string, unknown>
  const peerId = Object.hasOwn(t, 'peer') ? t.peer : undefined
  if (typeof peerId !== 'string' || peerId.length === 0 || peerId.length > RECORD_LIMITS.maxPeerIdChars) return bad('peer id missing or too long')
  if (peerId === self.peerId) return { ok: false, ignored: true, reason: 'our own record' }
  if (t.fleet !== self.fleetTag) return { ok: false, ignored: true, reason: 'another fleet' }
  try {
    // the canonical form only: one peer must not appear under two spellings
    if (peerIdFromString(peerId).toString() !== peerId) return bad('peer id is not in canonical form')
  } catch {
    return bad('peer id does not parse')
  }
  const role = t.role
  if (typeof role !== 'string' || !ROLES.has(role)) return bad('role is not agent, manager or node')
  const version = t.ver === undefined ? '' : t.ver
  if (!printable(version, RECORD_LIMITS.maxVersionChars)) return bad('version is too long or not printable')
  const name = t.name === undefined ? '' : t.name
  if (!printable(name, RECORD_LIMITS.maxNameChars)) return bad('name is too long or not printable')
  const portText = t.port === undefined ? service.port : t.port
  const port = typeof portText === 'number' ? portText : typeof portText === 'string' && /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN
  if (!Number.isInteger(port) || port < 1 || port > 65535) return bad('port is not 1..65535')
  const hosts = new Set<string>()
  const addresses = service.addresses ?? []
  if (!Array.isArray(addresses)) return bad('addresses is not a list')
  for (const a of addresses as unknown[]) {
    if (typeof a !== 'string' || isIP(a) === 0) return bad('an address is not an IP')
    hosts.add(a)
  }
  const referer = typeof service.referer === 'object' && service.referer !== null ? service.referer.address : undefined
  if (referer !== undefined) {
    if (typeof referer !== 'string' || isIP(referer) === 0) return bad('the sender address is not an IP')
    hosts.add(referer)
  }
  const addrs: Multiaddr[] = []
  for (const host of hosts) {
    if (addrs.length >= RECORD_LIMITS.maxAddrs) break
    if (isIP(host) === 6) {
      if (host.toLowerCase().startsWith('fe80')) continue // link-local needs a zone id libp2p cannot dial
      addrs.push(multiaddr(`/ip6/${host}/tcp/${port}/p2p/${peerId}`))
    } else {
      addrs.push(multiaddr(`/ip4/${host}/tcp/${port}/p2p/${peerId}`))
    }
  }
  if (addrs.length === 0) return bad('no dialable address')
  return { ok: true, peer: { peerId, addrs, role: role as Role | 'node', version, name, source: 'mdns' } }
}

/**
 * The discovery an endpoint runs (agent or bare node): it announces itself and browses for
 * nothing it acts on; the manager is the one that finds peers and dials them.
 */
export function endpointDiscovery (o: { peerId: string, role: Role, version: string, name: string, port: number, fleetTag: string, mdns: { enabled: boolean, queryIntervalSeconds: number }, clock: Clock, log: Logger }): Discovery {
  return new Discovery({
    self: { peerId: o.peerId, role: o.role, version: o.version, name: o.name, port: o.port, fleetTag: o.fleetTag },
    mdns: o.mdns.enabled,
    queryIntervalMs: o.mdns.queryIntervalSeconds * 1000,
    staticPeers: [],
    onPeer: () => {},
    clock: o.clock,
    log: o.log
  })
}
