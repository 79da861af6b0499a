/**
 * A streaming tar reader (ustar and pax): turns the archive's bytes into a sequence of events,
 * an entry's header, then its data in the pieces it arrived in, then its end. It holds at most
 * one block plus one incoming chunk (and a pax header, bounded), never a whole file. It checks
 * the format only (checksums, numbers, lengths, a complete archive); what an entry may be and
 * where it may go is the extractor's decision (tar-extract.ts).
 */
import { HoldfastError } from '../util/errors.js'
import { BLOCK, FIELD, TYPE, headerChecksum } from './tar-format.js'

export interface TarEntry {
  path: string
  /** The ustar typeflag ('0' file, '5' directory, '2' symlink, '1' hardlink, '3'/'4' devices, '6' fifo...). */
  typeflag: string
  mode: number
  size: number
  mtime: number
  linkname: string
}

export type TarEvent =
  | { kind: 'entry', entry: TarEntry }
  | { kind: 'data', bytes: Uint8Array }
  | { kind: 'end' }

export interface TarReadOptions {
  /** Bytes of one pax header's records (names of any sane length fit in far less). */
  maxPaxBytes?: number
}

const invalid = (why: string): HoldfastError => new HoldfastError('PACKAGE_INVALID', `tar: ${why}`)

/** Reads exact byte counts out of an async stream of chunks of any size. */
class ByteSource {
  private pending: Uint8Array = new Uint8Array(0)
  private readonly it: AsyncIterator<Uint8Array>
  private done = false

  constructor (source: AsyncIterable<Uint8Array>) { this.it = source[Symbol.asyncIterator]() }

  /** Up to `max` bytes (at least one), or undefined at the end of the stream. */
  async some (max: number): Promise<Uint8Array | undefined> {
    while (this.pending.byteLength === 0) {
      if (this.done) return undefined
      const next = await this.it.next()
      if (next.done === true) { this.done = true; return undefined }
      this.pending = next.value
    }
    const out = this.pending.subarray(0, max)
    this.pending = this.pending.subarray(out.byteLength)
    return out
  }

  /** Exactly `n` bytes, or undefined if the stream ends first (with fewer than `n` read, the archive is truncated). */
  async exact (n: number): Promise<{ bytes: Buffer, complete: boolean }> {
    const out = Buffer.alloc(n)
    let got = 0
    while (got < n) {
      const piece = await this.some(n - got)
      if (piece === undefined) return { bytes: out.subarray(0, got), complete: false }
      out.set(piece, got)
      got += piece.byteLength
    }
    return { bytes: out, complete: true }
  }

  async close (): Promise<void> { await this.it.return?.() }
}

function readString (h: Buffer, [off, len]: readonly [number, number]): string {
  const field = h.subarray(off, off + len)
  const nul = field.indexOf(0)
  return field.subarray(0, nul < 0 ? len : nul).toString('utf8')
}

function readOctal (h: Buffer, field: readonly [number, number], name: string): number {
  const [off] = field
  // base-256 numbers (high bit set) are for sizes over 8 GiB: no package has one
  if (((h[off] as number) & 0x80) !== 0) throw invalid(`${name} in base-256 is not supported`)
  const text = readString(h, field).trim()
  if (text === '') return 0
  if (!/^[0-7]+$/.test(text)) throw invalid(`${name} ${JSON.stringify(text)} is not octal`)
  const value = parseInt(text, 8)
  if (!Number.isSafeInteger(value)) throw invalid(`${name} is out of range`)
  return value
}

/** Parses pax records into key → value (only the keys we use are honoured). */
function parsePax (bytes: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  let pos = 0
  while (pos < bytes.byteLength) {
    const space = bytes.indexOf(0x20, pos)
    if (space < 0 || space - pos > 20) throw invalid('pax record has no length')
    const lenText = bytes.subarray(pos, space).toString('ascii')
    if (!/^[0-9]+$/.test(lenText)) throw invalid('pax record length is not decimal')
    const len = Number(lenText)
    if (len <= space - pos + 1 || pos + len > bytes.byteLength || bytes[pos + len - 1] !== 0x0a) throw invalid('pax record length does not match')
    const record = bytes.subarray(space + 1, pos + len - 1).toString('utf8')
    const eq = record.indexOf('=')
    if (eq <= 0) throw invalid('pax record has no key')
    out.set(record.slice(0, eq), record.slice(eq + 1))
    pos += len
  }
  return out
}

function isZeroBlock (b: Buffer): boolean {
  for (const byte of b) if (byte !== 0) return false
  return true
}

export async function * readTar (source: AsyncIterable<Uint8Array>, options: TarReadOptions = {}): AsyncGenerator<TarEvent> {
  const maxPax = options.maxPaxBytes ?? 64 * 1024
  const input = new ByteSource(source)
  try {
    let pax = new Map<string, string>()
    for (;;) {
      const block = await input.exact(BLOCK)
      if (!block.complete) throw invalid(block.bytes.byteLength === 0 ? 'archive ends without its end-of-archive blocks' : 'archive ends inside a header')
      const h = block.bytes
      if (isZeroBlock(h)) {
        // End of archive: two zero blocks. Anything after them (record padding) is not read.
        const second = await input.exact(BLOCK)
        if (!second.complete || !isZeroBlock(second.bytes)) throw invalid('archive ends after one zero block')
        return
      }
      const magic = readString(h, FIELD.magic)
      if (magic !== 'ustar' && magic !== 'ustar ') throw invalid('header is not ustar')
      const stored = readOctal(h, FIELD.chksum, 'checksum')
      if (stored !== headerChecksum(h)) throw invalid('header checksum does not match')
      const typeflag = String.fromCharCode(h[FIELD.typeflag[0]] as number)
      let size = readOctal(h, FIELD.size, 'size')

      if (typeflag === TYPE.paxHeader || typeflag === TYPE.paxGlobal) {
        if (size > maxPax) throw invalid(`pax header of ${size} bytes is over ${maxPax}`)
        const body = await input.exact(size)
        if (!body.complete) throw invalid('archive ends inside a pax header')
        await skip(input, (BLOCK - (size % BLOCK)) % BLOCK)
        // A global header sets defaults for the rest; we honour none of its keys (our writer never
        // makes one), but read it so it is not taken for an entry.
        if (typeflag === TYPE.paxHeader) pax = parsePax(body.bytes)
        continue
      }

      const prefix = readString(h, FIELD.prefix)
      const name = readString(h, FIELD.name)
      const path = pax.get('path') ?? (prefix !== '' ? `${prefix}/${name}` : name)
      const linkname = pax.get('linkpath') ?? readString(h, FIELD.linkname)
      const paxSize = pax.get('size')
      if (paxSize !== undefined) {
        if (!/^[0-9]{1,15}$/.test(paxSize)) throw invalid('pax size is not a number')
        size = Number(paxSize)
      }
      pax = new Map()
      if (path.includes('\0') || linkname.includes('\0')) throw invalid('a name has a NUL')
      // Only regular files carry data; a size on a link or directory is ignored by tar, and we
      // refuse it rather than guess whether data follows.
      const carriesData = typeflag === TYPE.file || typeflag === TYPE.oldFile || typeflag === TYPE.contiguous
      if (!carriesData && size !== 0) throw invalid(`${JSON.stringify(path).slice(0, 200)}: a ${typeflag} entry with a size`)
      yield { kind: 'entry', entry: { path, typeflag, mode: readOctal(h, FIELD.mode, 'mode'), size, mtime: readOctal(h, FIELD.mtime, 'mtime'), linkname } }
      let left = size
      while (left > 0) {
        const piece = await input.some(left)
        if (piece === undefined) throw invalid(`archive ends inside ${JSON.stringify(path).slice(0, 200)}`)
        left -= piece.byteLength
        yield { kind: 'data', bytes: piece }
      }
      await skip(input, (BLOCK - (size % BLOCK)) % BLOCK)
      yield { kind: 'end' }
    }
  } finally {
    await input.close()
  }
}

async function skip (input: ByteSource, n: number): Promise<void> {
  if (n === 0) return
  const pad = await input.exact(n)
  if (!pad.complete) throw invalid('archive ends inside padding')
}
