/**
 * /holdfast/restore/1 — the manager pushes a snapshot's files back onto an agent, which writes
 * them under a restore directory of its own choosing.
 *
 *   → header {v, restoreId, label, overwrite, bytes?}  (JSON frame; bytes: what the files hold)
 *   ← {v, ok:true}  or {v, error:{code, message}}       (the agent is ready to write <label>)
 *   → entry frames:  0x01 | JSON {v, e: entry (as in the manifest protocol), d: data follows}
 *     after a file entry with d, one chunk frame per chunk id, in order:
 *                    0x02 | id(32) | rawLength(u32 BE) | zstd data
 *     (d is false for a hard link of an earlier file: same linkKey, size and chunks)
 *   → end frame:     0x00 | JSON {v, entries, chunks, bytes}
 *   ← summary {v, files, dirs, symlinks, other, bytes, errors:[{path, code, message}]}
 *
 * The receiver checks every chunk: the id is the one the entry names next, the data
 * decompresses (bounded by rawLength) and hashes to the id. A corrupt chunk spoils that file
 * alone (reported in the summary, the partial file removed); a stream that ends before the end
 * frame, or counts that do not match, fail the whole exchange. Every frame has a size limit,
 * the exchange a deadline, and each frame must come within the idle timeout.
 */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HoldfastError, describeError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { CHUNK_ID_BYTES, toHex, type StagedEntry } from '../model/entry.js'
import { checkRawLength, verifyChunk } from '../codec/chunk-codec.js'
import { FrameBatcher, FrameReader } from './framing.js'
import { entryFromWire, entryToWire, MANIFEST_LIMITS } from './manifest.js'
import { arr, bool, decodeJson, deadline, encodeJson, field, IdleDeadline, int, protocolId, readJson, runExchange, sendJson, str, WIRE_VERSION, type PeerGate, type ProtocolHost } from './exchange.js'
import { ProtocolService, type Exchange } from './service.js'

export const RESTORE_PROTOCOL = protocolId('restore')

export const RESTORE_LIMITS = Object.freeze({
  maxHeaderBytes: 1024,
  /** One entry: the manifest's page limit bounds the largest entry that can have been backed up. */
  maxEntryFrameBytes: MANIFEST_LIMITS.maxFrameBytes,
  /** Largest chunk (4 MiB) plus zstd's worst-case expansion and the frame's own header. */
  maxChunkFrameBytes: 4 * 1024 * 1024 + 64 * 1024 + 64,
  maxEndFrameBytes: 1024,
  /** The summary lists at most this many errors (and counts the rest). */
  maxSummaryErrors: 1000,
  maxSummaryBytes: 1024 * 1024,
  /** Labels name a directory under the agent's restore root: one plain path component. */
  labelPattern: /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
  /** The whole push: generous, a restore can be large. */
  timeoutMs: 24 * 3600_000,
  /** The exchange fails if no frame arrives for this long. */
  idleTimeoutMs: 60_000
})

const FRAME_END = 0x00
const FRAME_ENTRY = 0x01
const FRAME_CHUNK = 0x02

export interface RestoreHeader {
  restoreId: string
  label: string
  overwrite: boolean
  /** The bytes of the files to write (for the agent's free-space check); absent from older managers. */
  bytes?: number
}

export interface RestoreError { path: string, code: string, message: string }

/** What the agent reports when a push is done. */
export interface AgentRestoreSummary {
  files: number
  dirs: number
  symlinks: number
  other: number
  bytes: number
  errors: RestoreError[]
  /** Errors beyond those listed. */
  errorsOmitted: number
}

/** The plaintext of chunk `index` of the current file, verified against `id`. */
export type RestoreChunkProvider = (index: number, id: Uint8Array) => Promise<Uint8Array>

/** One push being written on the agent (the store's RestoreSink fits this). */
export interface RestoreWriter {
  add: (e: StagedEntry, chunk: RestoreChunkProvider) => Promise<void>
  finish: () => { files: number, dirs: number, symlinks: number, other: number, bytes: number, errors: RestoreError[] }
  readonly errors: number
  /** The push failed part way: remove what was written (the agent's writer keeps no partial restore). */
  abort?: () => void
}

/** Where the agent writes pushes: `open` checks the label and makes its directory. */
export interface RestoreTarget {
  open: (header: RestoreHeader, manager: string) => Promise<RestoreWriter>
}

function headerFromWire (r: Record<string, unknown>): RestoreHeader {
  const label = str(r, 'label', 128)
  field(RESTORE_LIMITS.labelPattern.test(label), 'label', label)
  const header: RestoreHeader = { restoreId: str(r, 'restoreId', 128), label, overwrite: bool(r, 'overwrite') }
  if (r.bytes !== undefined) header.bytes = int(r, 'bytes')
  return header
}

function summaryFromWire (r: Record<string, unknown>): AgentRestoreSummary {
  const errors = arr(r, 'errors', RESTORE_LIMITS.maxSummaryErrors).map(v => {
    field(typeof v === 'object' && v !== null, 'errors', v)
    const e = v as Record<string, unknown>
    return { path: str(e, 'path', 65536), code: str(e, 'code', 64), message: str(e, 'message', 4096) }
  })
  return { files: int(r, 'files'), dirs: int(r, 'dirs'), symlinks: int(r, 'symlinks'), other: int(r, 'other'), bytes: int(r, 'bytes'), errors, errorsOmitted: int(r, 'errorsOmitted') }
}

function withKind (kind: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + payload.byteLength)
  out[0] = kind
  out.set(payload, 1)
  return out
}

export interface RestoreServiceInit {
  target: RestoreTarget
  allow: PeerGate
  log: Logger
}

export class RestoreService {
  private readonly service: ProtocolService

  constructor (host: ProtocolHost, private readonly init: RestoreServiceInit) {
    this.service = new ProtocolService(host, {
      protocol: RESTORE_PROTOCOL,
      name: 'restore',
      // one push at a time per agent
      limits: { maxInboundStreams: 1, maxOutboundStreams: 1, timeoutMs: RESTORE_LIMITS.timeoutMs, idleTimeoutMs: RESTORE_LIMITS.idleTimeoutMs, maxErrorFrameBytes: RESTORE_LIMITS.maxSummaryBytes },
      refusal: 'this agent takes restores only from its pinned manager',
      handle: async exchange => { await this.serve(exchange) }
    }, init)
  }

  async start (): Promise<void> { await this.service.start() }
  async stop (): Promise<void> { await this.service.stop() }

  private async serve ({ stream, reader, remote, signal, touch, log }: Exchange): Promise<void> {
    let writer: RestoreWriter
    let header: RestoreHeader
    try {
      header = await readJson(reader, RESTORE_LIMITS.maxHeaderBytes, 'the restore header', headerFromWire)
      writer = await this.init.target.open(header, remote)
    } catch (err) {
      log.warn('restore refused', { err: describeError(err) })
      throw err
    }
    log.info('restore started', { restore: header.restoreId, label: header.label, overwrite: header.overwrite })
    await sendJson(stream, { v: WIRE_VERSION, ok: true }, RESTORE_LIMITS.maxHeaderBytes, signal)
    let summary: AgentRestoreSummary
    try {
      summary = await receive(reader, writer, touch)
    } catch (err) {
      // nothing half-written stays behind looking like a restore (the partial directory goes)
      writer.abort?.()
      throw err
    }
    await sendJson(stream, { v: WIRE_VERSION, ...summary }, RESTORE_LIMITS.maxSummaryBytes, signal)
    await stream.close({ signal })
    log.info('restore done', { restore: header.restoreId, files: summary.files, bytes: summary.bytes, errors: summary.errors.length + summary.errorsOmitted })
  }
}

/** Reads entries and chunks until the end frame, writing them; checks the end counts. */
async function receive (reader: FrameReader, writer: RestoreWriter, touch: () => void): Promise<AgentRestoreSummary> {
  let entries = 0
  let chunks = 0
  let bytes = 0
  const next = async (what: string): Promise<Uint8Array> => {
    touch()
    const frame = await reader.expect(RESTORE_LIMITS.maxChunkFrameBytes, what)
    if (frame.byteLength === 0) throw new HoldfastError('FRAME_MALFORMED', 'empty restore frame')
    return frame
  }
  for (;;) {
    const frame = await next('the end frame')
    if (frame[0] === FRAME_END) {
      const end = decodeJson(frame.subarray(1), r => ({ entries: int(r, 'entries'), chunks: int(r, 'chunks'), bytes: int(r, 'bytes') }))
      if (end.entries !== entries || end.chunks !== chunks || end.bytes !== bytes) {
        throw new HoldfastError('FRAME_MALFORMED', `end frame says ${end.entries} entries, ${end.chunks} chunks, ${end.bytes} bytes; received ${entries}, ${chunks}, ${bytes}`)
      }
      const s = writer.finish()
      return { files: s.files, dirs: s.dirs, symlinks: s.symlinks, other: s.other, bytes: s.bytes, errors: s.errors.slice(0, RESTORE_LIMITS.maxSummaryErrors), errorsOmitted: Math.max(0, writer.errors - Math.min(s.errors.length, RESTORE_LIMITS.maxSummaryErrors)) }
    }
    if (frame[0] !== FRAME_ENTRY) throw new HoldfastError('FRAME_MALFORMED', `expected an entry frame, got type ${String(frame[0])}`)
    if (frame.byteLength > RESTORE_LIMITS.maxEntryFrameBytes) throw new HoldfastError('FRAME_TOO_LARGE', `entry frame of ${frame.byteLength} bytes`)
    const { entry, data } = decodeJson(frame.subarray(1), r => ({ entry: entryFromWire(r.e), data: bool(r, 'd') }))
    entries++
    const expected = entry.type === 'file' && data ? entry.chunks.byteLength / CHUNK_ID_BYTES : 0
    let consumed = 0
    const readChunk = async (index: number, id: Uint8Array): Promise<Uint8Array> => {
      // no data sent: the writer links the file to an earlier one, or cannot restore it
      if (!data) throw new HoldfastError('CHUNK_MISSING', `no data sent for chunk ${toHex(id)} (a hard link whose first name was not restored)`)
      if (index !== consumed || index >= expected) throw new HoldfastError('FRAME_MALFORMED', `chunk ${index} asked out of order`)
      const f = await next(`chunk ${index} of ${expected}`)
      consumed++
      chunks++
      const got = parseChunk(f)
      bytes += got.compressed.byteLength
      if (!Buffer.from(got.id).equals(Buffer.from(id))) throw new HoldfastError('FRAME_MALFORMED', `chunk ${index} is ${toHex(got.id)}, not ${toHex(id)}`)
      return verifyChunk(id, got.compressed, got.rawLength)
    }
    await writer.add(entry, readChunk)
    // The file failed part way (a corrupt chunk): skip the rest of its chunks, unchecked.
    while (consumed < expected) {
      const f = await next(`chunk ${consumed} of ${expected}`)
      const got = parseChunk(f)
      const id = entry.chunks.subarray(consumed * CHUNK_ID_BYTES, (consumed + 1) * CHUNK_ID_BYTES)
      if (!Buffer.from(got.id).equals(Buffer.from(id))) throw new HoldfastError('FRAME_MALFORMED', `chunk ${consumed} is ${toHex(got.id)}, not ${toHex(id)}`)
      consumed++
      chunks++
      bytes += got.compressed.byteLength
    }
  }
}

function parseChunk (frame: Uint8Array): { id: Uint8Array, rawLength: number, compressed: Uint8Array } {
  if (frame[0] !== FRAME_CHUNK) throw new HoldfastError('FRAME_MALFORMED', `expected a chunk frame, got type ${String(frame[0])}`)
  if (frame.byteLength < 1 + CHUNK_ID_BYTES + 4) throw new HoldfastError('FRAME_MALFORMED', 'chunk frame too short')
  const rawLength = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(1 + CHUNK_ID_BYTES, false)
  checkRawLength(rawLength)
  return { id: frame.subarray(1, 1 + CHUNK_ID_BYTES), rawLength, compressed: frame.subarray(1 + CHUNK_ID_BYTES + 4) }
}

/** What the manager provides to push: the entries in order and each chunk as stored. */
export interface RestorePushSource {
  entries: () => Iterable<StagedEntry> | AsyncIterable<StagedEntry>
  /** The stored (zstd) bytes of a chunk and its plaintext length; throws CHUNK_MISSING. */
  chunk: (id: Uint8Array) => { rawLength: number, compressed: Uint8Array }
}

export interface RestorePushProgress { entries: number, files: number, bytes: number }

export interface RestorePushOptions {
  signal?: AbortSignal
  timeoutMs?: number
  onProgress?: (p: RestorePushProgress) => void
}

export class RestoreClient {
  constructor (private readonly host: ProtocolHost) {}

  /**
   * Pushes the entries to the agent and returns its summary. Throws REMOTE_ERROR with the
   * agent's code when it refuses (PEER_NOT_ALLOWED, RESTORE_TARGET_NOT_EMPTY…), and whatever
   * the stream does wrong as in the other protocols.
   */
  async push (peer: PeerId | Multiaddr | Multiaddr[], header: RestoreHeader, source: RestorePushSource, options: RestorePushOptions = {}): Promise<AgentRestoreSummary> {
    if (!RESTORE_LIMITS.labelPattern.test(header.label)) throw new HoldfastError('ADMIN_BAD_REQUEST', `restore label '${header.label}' is not a plain name`)
    const signal = deadline(options.timeoutMs ?? RESTORE_LIMITS.timeoutMs, options.signal)
    const stream = await this.host.dialProtocol(peer, RESTORE_PROTOCOL, { signal })
    const reader = new FrameReader(stream)
    const idle = new IdleDeadline(RESTORE_LIMITS.idleTimeoutMs, signal)
    try {
      return await runExchange(stream, idle.signal, 'restore push', async () => {
        await sendJson(stream, { v: WIRE_VERSION, restoreId: header.restoreId, label: header.label, overwrite: header.overwrite, ...(header.bytes === undefined ? {} : { bytes: header.bytes }) }, RESTORE_LIMITS.maxHeaderBytes, signal)
        await readJson(reader, RESTORE_LIMITS.maxSummaryBytes, 'the answer to the restore header', r => {
          if (r.ok !== true) throw new HoldfastError('FRAME_MALFORMED', 'restore header not accepted')
          return true
        })
        const batcher = new FrameBatcher(stream, 256 * 1024)
        const linked = new Map<string, { size: number, chunks: Uint8Array }>()
        let entries = 0
        let files = 0
        let chunks = 0
        let bytes = 0
        for await (const e of source.entries()) {
          idle.touch()
          // A hard link of a file already sent (same linkKey, size and chunks) needs no data.
          const first = e.type !== 'file' || e.linkKey === undefined ? undefined : linked.get(e.linkKey)
          const link = first !== undefined && first.size === e.size && Buffer.from(first.chunks).equals(Buffer.from(e.chunks))
          await batcher.push(withKind(FRAME_ENTRY, encodeJson({ v: WIRE_VERSION, e: entryToWire(e), d: e.type === 'file' && !link }, RESTORE_LIMITS.maxEntryFrameBytes - 1)), signal)
          entries++
          if (e.type !== 'file') continue
          files++
          if (link) continue
          if (e.linkKey !== undefined) linked.set(e.linkKey, { size: e.size, chunks: e.chunks })
          for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
            const id = e.chunks.subarray(i, i + CHUNK_ID_BYTES)
            const c = source.chunk(id)
            const frame = new Uint8Array(1 + CHUNK_ID_BYTES + 4 + c.compressed.byteLength)
            frame[0] = FRAME_CHUNK
            frame.set(id, 1)
            new DataView(frame.buffer).setUint32(1 + CHUNK_ID_BYTES, c.rawLength, false)
            frame.set(c.compressed, 1 + CHUNK_ID_BYTES + 4)
            await batcher.push(frame, signal)
            idle.touch()
            chunks++
            bytes += c.compressed.byteLength
          }
          if ((files & 63) === 0) options.onProgress?.({ entries, files, bytes })
        }
        await batcher.push(withKind(FRAME_END, encodeJson({ v: WIRE_VERSION, entries, chunks, bytes }, RESTORE_LIMITS.maxEndFrameBytes)), signal)
        await batcher.flush(signal)
        await stream.close({ signal })
        options.onProgress?.({ entries, files, bytes })
        // the agent writes as it reads; its summary comes once the last entry is down
        idle.touch()
        return await readJson(reader, RESTORE_LIMITS.maxSummaryBytes, 'the restore summary', summaryFromWire)
      })
    } finally {
      idle.clear()
    }
  }
}
