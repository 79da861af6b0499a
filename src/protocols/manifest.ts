/**
 * /holdfast/manifest/1 — the manager asks an agent what sealed staging sets it holds, and then
 * for the entries of one set.
 *
 *   list:    → {v, op:'list', windows?}       ← {v, agentVersion, idle, sets:[SetSummary],
 *                                                 utcOffsetMinutes?, timeZone?, uploadWindows?, load?, inputIdleSeconds?,
 *                                                 configVersion?}
 *
 * `windows` is the upload-window spec the manager applies to this endpoint (the agent shows it
 * in its status). The reply's optional fields came later: a manager reading an old agent's
 * reply without them evaluates windows in UTC, and an old agent ignores `windows`.
 *   entries: → {v, op:'entries', setId}       ← {v, entries:[WireEntry]}* then {v, done:true, count}
 *
 * Entries travel in pages so no single frame grows with the size of a set; the final frame
 * carries the count, so a stream cut between pages is detected, never taken as a short set.
 */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HoldfastError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { ENTRY_TYPES, CHUNK_ID_BYTES, displayPath, isSafeFolderName, isSafeRelativePath, type EntryType, type SetSummary, type StagedEntry } from '../model/entry.js'
import { FrameReader } from './framing.js'
import { arr, bool, deadline, int, protocolId, readJson, runExchange, sendJson, str, field, WIRE_VERSION, type PeerGate, type ProtocolHost } from './exchange.js'
import { ProtocolService, type Exchange } from './service.js'

export const MANIFEST_PROTOCOL = protocolId('manifest')

/** Longest upload-window spec on the wire (the parser's own limit). */
const MAX_WINDOW_CHARS = 512

export const MANIFEST_LIMITS = Object.freeze({
  /** A list request carries the manager's window spec (≤ 512 characters); old agents took 1024. */
  maxRequestBytes: 2048,
  maxFrameBytes: 4 * 1024 * 1024,
  maxSetsPerList: 10_000,
  entriesPerPage: 2000,
  maxEntriesPerPage: 10_000,
  /** Longest chunk list in one entry: a 64 GiB file at the minimum chunk size. */
  maxChunksPerEntry: 262_144,
  timeoutMs: 120_000
})

/** A rollback's reason as the manifest carries it (the supervisor's words, a line). */
const MAX_ROLLBACK_REASON_CHARS = 512

export interface AgentManifest {
  agentVersion: string
  /** The endpoint's name, so a manager that found it as a bare static peer can name it. */
  name?: string
  /** The endpoint is idle (low CPU load, no recent user input). Old agents always say true. */
  idle: boolean
  sets: SetSummary[]
  /** Minutes east of UTC now at the endpoint: its upload windows are in this local time. */
  utcOffsetMinutes?: number
  /** The endpoint's IANA zone, for a reader that has no offset. */
  timeZone?: string
  /** The agent's own upload-window spec (its config), unparsed. */
  uploadWindows?: string
  /** CPU load per core behind `idle`, and seconds since the last user input where known. */
  load?: number
  inputIdleSeconds?: number
  /** The central config version the agent has applied (0: none); the manager pushes a newer one (protocols/config.ts). */
  configVersion?: number
  /**
   * The last upgrade of this host failed its health check and was undone: the version that
   * failed and why (the supervisor's record, src/deploy/upgrade-state.ts). A rolling upgrade
   * reads it to tell "rolled back" from "not back yet".
   */
  rolledBack?: { version: string, reason: string }
}

/** What the manager says with a list request. */
export interface ManifestListRequest {
  /** The upload-window spec the manager applies to this endpoint. */
  windows?: string
}

/** What the agent provides to answer manifest requests. */
export interface ManifestSource {
  manifest: (request?: ManifestListRequest) => AgentManifest
  /** Entries of a sealed set in order; throws SET_UNKNOWN when there is no such set. */
  entries: (setId: number) => Iterable<StagedEntry>
}

interface WireEntry {
  f: string
  p: string
  t: EntryType
  m: number
  mt: string
  s: number
  c: string
  l?: string
  h?: string
}

export function entryToWire (e: StagedEntry): WireEntry {
  const wire: WireEntry = {
    f: e.folder,
    p: Buffer.from(e.path).toString('base64'),
    t: e.type,
    m: e.mode,
    mt: e.mtimeNs.toString(),
    s: e.size,
    c: Buffer.from(e.chunks).toString('base64')
  }
  if (e.target !== undefined) wire.l = Buffer.from(e.target).toString('base64')
  if (e.linkKey !== undefined) wire.h = e.linkKey
  return wire
}

export function entryFromWire (value: unknown): StagedEntry {
  if (typeof value !== 'object' || value === null) throw new HoldfastError('FRAME_MALFORMED', 'entry is not an object')
  const r = value as Record<string, unknown>
  const type = str(r, 't', 16) as EntryType
  field(ENTRY_TYPES.includes(type), 't', type)
  const mtime = str(r, 'mt', 32)
  field(/^-?\d{1,25}$/.test(mtime), 'mt', mtime)
  const path = new Uint8Array(Buffer.from(str(r, 'p', 16384), 'base64'))
  field(path.byteLength > 0, 'p', path)
  const chunks = new Uint8Array(Buffer.from(str(r, 'c', Math.ceil(MANIFEST_LIMITS.maxChunksPerEntry * CHUNK_ID_BYTES / 3) * 4 + 4), 'base64'))
  field(chunks.byteLength % CHUNK_ID_BYTES === 0, 'c', chunks)
  const entry: StagedEntry = {
    folder: str(r, 'f', 255),
    path,
    type,
    mode: int(r, 'm', 0, 0xffffffff),
    mtimeNs: BigInt(mtime),
    size: int(r, 's'),
    chunks
  }
  // Hostile content stops here, on both sides (the manager reading a manifest, the agent a
  // restore push): no entry that could name a place outside its folder gets past the decoder.
  // The restore writer checks again, for entries read from a store written before this check.
  if (!isSafeFolderName(entry.folder)) throw new HoldfastError('ENTRY_PATH_UNSAFE', `entry folder '${displayPath(Buffer.from(entry.folder))}' is not one path component`)
  if (!isSafeRelativePath(path)) throw new HoldfastError('ENTRY_PATH_UNSAFE', `entry path '${displayPath(path)}' is absolute, has '..', '.', an empty component or a NUL`)
  if (r.l !== undefined) entry.target = new Uint8Array(Buffer.from(str(r, 'l', 16384), 'base64'))
  if (r.h !== undefined) entry.linkKey = str(r, 'h', 64)
  return entry
}

function signedInt (r: Record<string, unknown>, name: string, bound: number): number {
  const v = r[name]
  return field(typeof v === 'number' && Number.isInteger(v) && Math.abs(v) <= bound, name, v as number)
}

function summaryFromWire (value: unknown): SetSummary {
  if (typeof value !== 'object' || value === null) throw new HoldfastError('FRAME_MALFORMED', 'set summary is not an object')
  const r = value as Record<string, unknown>
  return {
    id: int(r, 'id', 1),
    sealedAt: int(r, 'sealedAt'),
    entries: int(r, 'entries'),
    chunks: int(r, 'chunks'),
    rawBytes: int(r, 'rawBytes'),
    storedBytes: int(r, 'storedBytes')
  }
}

type ManifestRequest = { op: 'list', windows?: string } | { op: 'entries', setId: number }

function requestFromWire (r: Record<string, unknown>): ManifestRequest {
  const op = str(r, 'op', 16)
  if (op === 'list') return r.windows === undefined ? { op } : { op, windows: str(r, 'windows', MAX_WINDOW_CHARS) }
  if (op === 'entries') return { op, setId: int(r, 'setId', 1) }
  throw new HoldfastError('FRAME_MALFORMED', `unknown manifest op '${op}'`)
}

export interface ManifestProtocolInit {
  source: ManifestSource
  allow: PeerGate
  log: Logger
  timeoutMs?: number
}

/** The agent's side: answers manifest requests from allowed managers. */
export class ManifestService {
  private readonly service: ProtocolService

  constructor (host: ProtocolHost, private readonly init: ManifestProtocolInit) {
    this.service = new ProtocolService(host, {
      protocol: MANIFEST_PROTOCOL,
      name: 'manifest',
      limits: { maxInboundStreams: 8, maxOutboundStreams: 8, timeoutMs: init.timeoutMs ?? MANIFEST_LIMITS.timeoutMs, maxErrorFrameBytes: MANIFEST_LIMITS.maxFrameBytes },
      refusal: 'this agent serves only its pinned manager',
      handle: async exchange => { await this.serve(exchange) }
    }, init)
  }

  async start (): Promise<void> { await this.service.start() }
  async stop (): Promise<void> { await this.service.stop() }

  private async serve ({ stream, reader, signal }: Exchange): Promise<void> {
    const request = await readJson(reader, MANIFEST_LIMITS.maxRequestBytes, 'the manifest request', requestFromWire)
    if (request.op === 'list') {
      const m = this.init.source.manifest(request.windows === undefined ? {} : { windows: request.windows })
      await sendJson(stream, { v: WIRE_VERSION, agentVersion: m.agentVersion, name: m.name, idle: m.idle, sets: m.sets.slice(0, MANIFEST_LIMITS.maxSetsPerList), utcOffsetMinutes: m.utcOffsetMinutes, timeZone: m.timeZone, uploadWindows: m.uploadWindows, load: m.load, inputIdleSeconds: m.inputIdleSeconds, configVersion: m.configVersion, rolledBack: m.rolledBack === undefined ? undefined : { version: m.rolledBack.version.slice(0, 64), reason: m.rolledBack.reason.slice(0, MAX_ROLLBACK_REASON_CHARS) } }, MANIFEST_LIMITS.maxFrameBytes, signal)
    } else {
      // throws SET_UNKNOWN before any page is sent; the helper answers with the error frame
      const entries = this.init.source.entries(request.setId)
      let page: WireEntry[] = []
      let count = 0
      for (const entry of entries) {
        page.push(entryToWire(entry))
        count++
        if (page.length >= MANIFEST_LIMITS.entriesPerPage) {
          await sendJson(stream, { v: WIRE_VERSION, entries: page }, MANIFEST_LIMITS.maxFrameBytes, signal)
          page = []
        }
      }
      if (page.length > 0) await sendJson(stream, { v: WIRE_VERSION, entries: page }, MANIFEST_LIMITS.maxFrameBytes, signal)
      await sendJson(stream, { v: WIRE_VERSION, done: true, count }, MANIFEST_LIMITS.maxFrameBytes, signal)
    }
    await stream.close({ signal })
  }
}

export interface ManifestClientOptions {
  signal?: AbortSignal
  timeoutMs?: number
  /** list only: the upload windows the manager applies to this endpoint. */
  windows?: string
}

/** The manager's side. */
export class ManifestClient {
  constructor (private readonly host: ProtocolHost) {}

  async list (peer: PeerId | Multiaddr | Multiaddr[], options: ManifestClientOptions = {}): Promise<AgentManifest> {
    const signal = deadline(options.timeoutMs ?? MANIFEST_LIMITS.timeoutMs, options.signal)
    const stream = await this.host.dialProtocol(peer, MANIFEST_PROTOCOL, { signal })
    return await runExchange(stream, signal, 'manifest list', async () => {
      const request = options.windows === undefined ? { v: WIRE_VERSION, op: 'list' } : { v: WIRE_VERSION, op: 'list', windows: options.windows.slice(0, MAX_WINDOW_CHARS) }
      await sendJson(stream, request, MANIFEST_LIMITS.maxRequestBytes, signal)
      await stream.close({ signal })
      const reader = new FrameReader(stream)
      return await readJson(reader, MANIFEST_LIMITS.maxFrameBytes, 'the manifest', r => {
        const manifest: AgentManifest = {
          agentVersion: str(r, 'agentVersion', 64),
          idle: bool(r, 'idle'),
          sets: arr(r, 'sets', MANIFEST_LIMITS.maxSetsPerList).map(summaryFromWire)
        }
        if (r.name !== undefined) manifest.name = str(r, 'name', 255)
        // later fields: absent from old agents; out of range is a malformed reply like any other
        if (r.utcOffsetMinutes !== undefined) manifest.utcOffsetMinutes = signedInt(r, 'utcOffsetMinutes', 14 * 60)
        if (r.timeZone !== undefined) manifest.timeZone = str(r, 'timeZone', 64)
        if (r.uploadWindows !== undefined) manifest.uploadWindows = str(r, 'uploadWindows', MAX_WINDOW_CHARS)
        if (r.load !== undefined) manifest.load = field(typeof r.load === 'number' && Number.isFinite(r.load) && r.load >= 0, 'load', r.load as number)
        if (r.inputIdleSeconds !== undefined) manifest.inputIdleSeconds = int(r, 'inputIdleSeconds')
        if (r.configVersion !== undefined) manifest.configVersion = int(r, 'configVersion')
        if (r.rolledBack !== undefined) {
          const rb = field(typeof r.rolledBack === 'object' && r.rolledBack !== null && !Array.isArray(r.rolledBack), 'rolledBack', r.rolledBack) as Record<string, unknown>
          manifest.rolledBack = { version: str(rb, 'version', 64), reason: str(rb, 'reason', MAX_ROLLBACK_REASON_CHARS) }
        }
        return manifest
      })
    })
  }

  /** Streams the entries of one set; throws STREAM_ENDED_EARLY if the final frame is missing. */
  async * entries (peer: PeerId | Multiaddr | Multiaddr[], setId: number, options: ManifestClientOptions = {}): AsyncGenerator<StagedEntry[]> {
    const signal = deadline(options.timeoutMs ?? MANIFEST_LIMITS.timeoutMs, options.signal)
    const stream = await this.host.dialProtocol(peer, MANIFEST_PROTOCOL, { signal })
    const reader = new FrameReader(stream)
    await runExchange(stream, signal, 'manifest entries', async () => {
      await sendJson(stream, { v: WIRE_VERSION, op: 'entries', setId }, MANIFEST_LIMITS.maxRequestBytes, signal)
      await stream.close({ signal })
    })
    let received = 0
    for (;;) {
      const page = await runExchange(stream, signal, 'manifest entries', async () =>
        await readJson(reader, MANIFEST_LIMITS.maxFrameBytes, 'the end of the entry list', r => {
          if (r.done === true) return { done: true as const, count: int(r, 'count') }
          return { done: false as const, entries: arr(r, 'entries', MANIFEST_LIMITS.maxEntriesPerPage).map(entryFromWire) }
        }))
      if (page.done) {
        if (page.count !== received) throw new HoldfastError('FRAME_MALFORMED', `entry count ${page.count} does not match the ${received} entries received`)
        return
      }
      received += page.entries.length
      yield page.entries
    }
  }
}
