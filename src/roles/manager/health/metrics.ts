/**
 * The manager's Prometheus endpoint (prom-client, a registry of its own so nothing else in the
 * process leaks into it). Per endpoint: last good backup, its age, bytes waiting, receive rate,
 * state, overdue; the manager's own: pulls started/ok/failed, bytes pulled, pull durations,
 * errors by code, pulls running and waiting, the budget. Endpoint figures are read from the
 * manager at each scrape (what `holdfast peers` would print then); counters count as pulls end.
 * Off unless `manager.metrics.listen` is set; a bare port listens on loopback.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { HoldfastError, describeError } from '../../../util/errors.js'
import type { Logger } from '../../../util/log.js'
import type { ListenAddress } from '../../../model/listen-address.js'
import type { EndpointState } from './fleet-health.js'

export interface EndpointFigures {
  peerId: string
  name: string
  state: EndpointState
  lastGoodAt?: number
  lastGoodAgeMs?: number
  pendingBytes?: number
  rate: number
  overdue: boolean
}

export interface ManagerFigures {
  activePulls: number
  /** Due endpoints waiting for a slot or for budget. */
  queueLength: number
  budgetBytesPerSecond: number
}

export interface MetricsSource {
  endpoints: () => EndpointFigures[]
  manager: () => ManagerFigures
}

export type PullEnd =
  | { ok: true, bytes: number, ms: number }
  | { ok: false, code: string, ms: number }
  /** The endpoint answered but may not upload now: neither a success nor a failure. */
  | { ok: 'skipped', ms: number }

const STATES: EndpointState[] = ['online', 'offline', 'backing up', 'waiting']
/** Error codes are ours or errno names; past this many distinct ones, the rest are OTHER. */
const MAX_ERROR_CODES = 64
/** A scrape is a few hundred bytes per endpoint; a client that cannot send a GET in this long is gone. */
const REQUEST_TIMEOUT_MS = 10_000
const MAX_CONNECTIONS = 32

export class ManagerMetrics {
  readonly registry = new Registry()
  private readonly lastGood: Gauge
  private readonly lastGoodAge: Gauge
  private readonly pending: Gauge
  private readonly rate: Gauge
  private readonly state: Gauge
  private readonly overdue: Gauge
  private readonly started: Counter
  private readonly ended: Counter
  private readonly bytes: Counter
  private readonly duration: Histogram
  private readonly errors: Counter
  private readonly active: Gauge
  private readonly queue: Gauge
  private readonly budget: Gauge
  private readonly codes = new Set<string>()

  constructor (private readonly source: MetricsSource) {
    const registers = [this.registry]
    const ep = ['peer', 'name']
    this.lastGood = new Gauge({ name: 'holdfast_endpoint_last_good_backup_timestamp_seconds', help: 'When the endpoint was last backed up to the end (Unix seconds); absent if never', labelNames: ep, registers })
    this.lastGoodAge = new Gauge({ name: 'holdfast_endpoint_last_good_backup_age_seconds', help: 'Seconds since the last good backup; absent if never', labelNames: ep, registers })
    this.pending = new Gauge({ name: 'holdfast_endpoint_pending_bytes', help: 'Bytes the endpoint has staged and the manager has not pulled (as of its last manifest)', labelNames: ep, registers })
    this.rate = new Gauge({ name: 'holdfast_endpoint_rate_bytes_per_second', help: 'Bytes per second received from the endpoint lately (0 when not pulling)', labelNames: ep, registers })
    this.state = new Gauge({ name: 'holdfast_endpoint_state', help: '1 for the endpoint\'s current state, 0 for the others', labelNames: [...ep, 'state'], registers })
    this.overdue = new Gauge({ name: 'holdfast_endpoint_overdue', help: '1 when the last good backup is older than manager.overdueAfterHours', labelNames: ep, registers })
    this.started = new Counter({ name: 'holdfast_pulls_started_total', help: 'Visits (manifest and pull) started', registers })
    this.ended = new Counter({ name: 'holdfast_pulls_total', help: 'Visits ended, by result (ok, failed, skipped)', labelNames: ['result'], registers })
    this.bytes = new Counter({ name: 'holdfast_pulled_bytes_total', help: 'Bytes pulled from endpoints (compressed chunks)', registers })
    this.duration = new Histogram({ name: 'holdfast_pull_duration_seconds', help: 'How long a visit took, by result', labelNames: ['result'], buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600], registers })
    this.errors = new Counter({ name: 'holdfast_pull_errors_total', help: 'Failed visits by error code', labelNames: ['code'], registers })
    this.active = new Gauge({ name: 'holdfast_pulls_active', help: 'Visits running now', registers })
    this.queue = new Gauge({ name: 'holdfast_pulls_queued', help: 'Endpoints due and waiting for a slot or for budget', registers })
    this.budget = new Gauge({ name: 'holdfast_budget_bytes_per_second', help: 'The global pull budget B now (after time-of-day profiles)', registers })
    // zero, not absent, before the first pull: a rate() over a counter needs the series
    for (const result of ['ok', 'failed', 'skipped']) this.ended.inc({ result }, 0)
  }

  pullStarted (): void { this.started.inc() }

  pullEnded (end: PullEnd): void {
    const result = end.ok === true ? 'ok' : end.ok === false ? 'failed' : 'skipped'
    this.ended.inc({ result })
    this.duration.observe({ result }, end.ms / 1000)
    if (end.ok === true) this.bytes.inc(end.bytes)
    if (end.ok === false) {
      let code = end.code
      if (!this.codes.has(code)) {
        if (this.codes.size >= MAX_ERROR_CODES) code = 'OTHER'
        else this.codes.add(code)
      }
      this.errors.inc({ code })
    }
  }

  /** Sets the gauges from the manager now and renders the registry. */
  async render (): Promise<string> {
    for (const g of [this.lastGood, this.lastGoodAge, this.pending, this.rate, this.state, this.overdue]) g.reset()
    for (const e of this.source.endpoints()) {
      const labels = { peer: e.peerId, name: e.name }
      if (e.lastGoodAt !== undefined) this.lastGood.set(labels, e.lastGoodAt / 1000)
      if (e.lastGoodAgeMs !== undefined) this.lastGoodAge.set(labels, e.lastGoodAgeMs / 1000)
      if (e.pendingBytes !== undefined) this.pending.set(labels, e.pendingBytes)
      this.rate.set(labels, e.rate)
      for (const state of STATES) this.state.set({ ...labels, state }, state === e.state ? 1 : 0)
      this.overdue.set(labels, e.overdue ? 1 : 0)
    }
    const m = this.source.manager()
    this.active.set(m.activePulls)
    this.queue.set(m.queueLength)
    this.budget.set(m.budgetBytesPerSecond)
    return await this.registry.metrics()
  }
}

/** GET /metrics over plain HTTP; anything else is 404 (or 405). */
export class MetricsServer {
  private server?: Server

  constructor (private readonly metrics: ManagerMetrics, private readonly log: Logger) {}

  /** Listens; resolves with the URL to scrape (with the port chosen, if 0 was asked for). */
  async start (at: ListenAddress): Promise<string> {
    const server = createServer((req, res) => { void this.handle(req, res) })
    server.requestTimeout = REQUEST_TIMEOUT_MS
    server.headersTimeout = REQUEST_TIMEOUT_MS
    server.maxConnections = MAX_CONNECTIONS
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(at.port, at.host, () => { server.off('error', reject); resolve() })
      })
    } catch (err) {
      throw new HoldfastError('METRICS_LISTEN_FAILED', `the metrics endpoint cannot listen on ${at.host}:${at.port}: ${describeError(err)}`, {}, { cause: err })
    }
    server.on('error', err => { this.log.warn('metrics endpoint error', { err: describeError(err) }) })
    this.server = server
    const addr = server.address()
    const port = typeof addr === 'object' && addr !== null ? addr.port : at.port
    const host = at.host.includes(':') ? `[${at.host}]` : at.host
    return `http://${host}:${port}/metrics`
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    server.closeAllConnections()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics') { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n'); return }
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD' }).end(); return }
    try {
      const body = await this.metrics.render()
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType })
      res.end(req.method === 'HEAD' ? undefined : body)
    } catch (err) {
      this.log.warn('rendering metrics failed', { err: describeError(err) })
      res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n')
    }
  }
}
