/**
 * Finding peers: mDNS (bonjour-service) advertises `_holdfast._tcp` with a TXT record and
 * browses for it; static peers from the config are the fallback where multicast does not pass.
 * Both feed one callback with dialable peer records, so the peer table does not care where a
 * peer came from.
 */
import { Bonjour, type Browser, type Service } from 'bonjour-service'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
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
  clock: Clock
  log: Logger
}

export class Discovery {
  private bonjour?: Bonjour
  private browser?: Browser
  private readonly controller = new AbortController()
  private mdnsActive = false

  constructor (private readonly init: DiscoveryInit) {}

  get mdnsEnabled (): boolean { return this.mdnsActive }

  start (): void {
    for (const text of this.init.staticPeers) {
      try {
        const ma = multiaddr(text)
        const peerId = ma.getComponents().find(c => c.name === 'p2p')?.value
        if (peerId === undefined) { this.init.log.warn('static peer has no /p2p/<peer id>; ignored', { addr: text }); continue }
        this.init.onPeer({ peerId, addrs: [ma], role: 'agent', version: '', name: '', source: 'static' })
      } catch (err) {
        this.init.log.warn('static peer is not a valid multiaddr; ignored', { addr: text, err: String(err) })
      }
    }
    if (!this.init.mdns) {
      this.init.log.info('mDNS discovery is off; using static peers only', { staticPeers: this.init.staticPeers.length })
      return
    }
    try {
      this.bonjour = new Bonjour({}, (err: unknown) => {
        this.init.log.warn('mDNS failed; discovery continues with static peers only', { err: String(err) })
        this.stopMdns()
      })
      const self = this.init.self
      this.bonjour.publish({
        name: `holdfast-${self.peerId.slice(-16)}`,
        type: MDNS_SERVICE_TYPE,
        protocol: 'tcp',
        port: self.port,
        txt: { peer: self.peerId, role: self.role, pv: DISCOVERY_PROTOCOL_VERSION, ver: self.version, name: self.name.slice(0, 60), fleet: self.fleetTag, port: String(self.port) }
      })
      this.browser = this.bonjour.find({ type: MDNS_SERVICE_TYPE, protocol: 'tcp' }, service => { this.onService(service) })
      this.browser.on('txt-update', (service: Service) => { this.onService(service) })
      this.mdnsActive = true
      void this.requeryLoop()
    } catch (err) {
      this.init.log.warn('mDNS could not start; discovery continues with static peers only', { err: String(err) })
      this.stopMdns()
    }
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

  private onService (service: Service): void {
    const txt = (service.txt ?? {}) as Record<string, unknown>
    const peerId = typeof txt.peer === 'string' ? txt.peer : undefined
    if (peerId === undefined || peerId === this.init.self.peerId) return
    if (txt.fleet !== this.init.self.fleetTag) {
      this.init.log.debug('ignoring an mDNS service of another fleet', { peer: peerId })
      return
    }
    const port = Number(txt.port ?? service.port)
    if (!Number.isInteger(port) || port <= 0 || port > 65535) return
    const hosts = new Set<string>()
    for (const a of service.addresses ?? []) hosts.add(a)
    if (service.referer?.address !== undefined) hosts.add(service.referer.address)
    const addrs: Multiaddr[] = []
    for (const host of hosts) {
      if (host.includes(':')) {
        if (host.startsWith('fe80')) continue // link-local needs a zone id libp2p cannot dial
        addrs.push(multiaddr(`/ip6/${host}/tcp/${port}/p2p/${peerId}`))
      } else {
        addrs.push(multiaddr(`/ip4/${host}/tcp/${port}/p2p/${peerId}`))
      }
    }
    if (addrs.length === 0) return
    const role = txt.role === 'agent' || txt.role === 'manager' || txt.role === 'node' ? txt.role : 'node'
    this.init.onPeer({
      peerId,
      addrs,
      role,
      version: typeof txt.ver === 'string' ? txt.ver : '',
      name: typeof txt.name === 'string' ? txt.name : '',
      source: 'mdns'
    })
  }
}
