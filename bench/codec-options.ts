/**
 * How to compress a chunk (issue 12 item 2): CPU-seconds and stored bytes of the ways node:zlib
 * offers, on the chunks of a real tree, in this one thread.
 *
 *   node dist/bench/codec-options.js [TREE] [--max-mb N] [--rounds N] [--out FILE]
 *
 * Every way must give each chunk its own zstd frame (chunks are deduplicated and decompressed
 * alone); each output is checked by decompressing it. CPU is process.cpuUsage() (user + sys,
 * all threads, so the libuv pool's work counts for the async ways), the best of --rounds.
 *   sync-per-call  zstdCompressSync per chunk, a new options object each call (before)
 *   sync-reused    zstdCompressSync per chunk, one options object reused
 *   async-reused   zstdCompress (libuv pool) per chunk, awaited, one options object
 *   stream-end     one ZstdCompress stream held open, flush mode ZSTD_e_end: each write is a
 *                  whole frame, awaited per chunk
 *   stream-flush   one ZstdCompress stream, write (ZSTD_e_continue) then flush(ZSTD_e_end)
 *   kept-context   src/codec/chunk-compressor.ts (after): one context, node's native call per chunk
 * and the level curve (1, 2, 3, 4, 6) for kept-context, with what storing incompressible chunks
 * raw would save.
 */
import { readdirSync, readFileSync, writeFileSync, lstatSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { constants, zstdCompress, zstdCompressSync, zstdDecompressSync, ZstdCompress } from 'node:zlib'
import { FastCdc, DEFAULT_CHUNKER } from '../src/chunking/fastcdc.js'
import { ChunkCompressor } from '../src/codec/chunk-compressor.js'
import { machineFacts, round, say, warmCache } from './support.js'

type Way = (chunks: Buffer[], level: number) => Promise<Buffer[]>

function cpuS (): number { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }

/** The tree's files cut into chunks, in walk order, until maxBytes. */
function sampleChunks (root: string, maxBytes: number): { chunks: Buffer[], files: number, bytes: number } {
  const chunker = new FastCdc(DEFAULT_CHUNKER)
  const chunks: Buffer[] = []
  let bytes = 0
  let files = 0
  const stack = [root]
  while (stack.length > 0 && bytes < maxBytes) {
    const dir = stack.pop() as string
    for (const d of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name < b.name ? -1 : 1)) {
      const p = join(dir, d.name)
      if (d.isDirectory()) { stack.push(p); continue }
      if (!d.isFile() || lstatSync(p).size === 0) continue
      const data = readFileSync(p)
      files++
      let start = 0
      while (start < data.length) {
        const len = chunker.cut(data, start, data.length, true)
        if (len <= 0) break
        chunks.push(Buffer.from(data.subarray(start, start + len)))
        start += len
      }
      bytes += data.length
      if (bytes >= maxBytes) break
    }
  }
  return { chunks, files, bytes }
}

const syncPerCall: Way = async (chunks, level) => chunks.map(c => zstdCompressSync(c, { params: { [constants.ZSTD_c_compressionLevel]: level } }))

const syncReused: Way = async (chunks, level) => {
  const opts = { params: { [constants.ZSTD_c_compressionLevel]: level } }
  return chunks.map(c => zstdCompressSync(c, opts))
}

const asyncReused: Way = async (chunks, level) => {
  const opts = { params: { [constants.ZSTD_c_compressionLevel]: level } }
  const out: Buffer[] = []
  for (const c of chunks) {
    out.push(await new Promise<Buffer>((resolve, reject) => { zstdCompress(c, opts, (err, r) => { if (err !== null) reject(err); else resolve(r) }) }))
  }
  return out
}

/** One stream; `each` writes one chunk so that exactly one whole frame comes out of it. */
async function throughStream (chunks: Buffer[], level: number, endEachWrite: boolean): Promise<Buffer[]> {
  const s = new ZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: level }, ...(endEachWrite ? { flush: constants.ZSTD_e_end } : {}) })
  let parts: Buffer[] = []
  s.on('data', (d: Buffer) => { parts.push(d) })
  const out: Buffer[] = []
  for (const c of chunks) {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      if (endEachWrite) {
        s.write(c, () => { s.off('error', reject); resolve() })
      } else {
        s.write(c)
        s.flush(constants.ZSTD_e_end, () => { s.off('error', reject); resolve() })
      }
    })
    out.push(parts.length === 1 ? parts[0] : Buffer.concat(parts))
    parts = []
  }
  s.end()
  return out
}

/** src/codec/chunk-compressor.ts: one kept context, node's own native call per chunk (after). */
const keptContext: Way = async (chunks, level) => {
  const c = new ChunkCompressor(level, DEFAULT_CHUNKER.maxSize)
  const out = chunks.map(p => c.compress(p))
  if (!c.reusable) throw new Error('ChunkCompressor fell back to zstdCompressSync')
  c.close()
  return out
}

const streamEnd: Way = async (chunks, level) => await throughStream(chunks, level, true)
const streamFlush: Way = async (chunks, level) => await throughStream(chunks, level, false)

interface Row { way: string, level: number, cpuS: number, wallS: number, stored: number }

/**
 * Runs each (way, level) once per round, the ways interleaved so that a busy machine's drift
 * falls on all of them alike; keeps each one's least CPU.
 */
async function measureAll (cases: Array<{ name: string, way: Way, level: number }>, chunks: Buffer[], rounds: number): Promise<Row[]> {
  const best = cases.map(() => ({ cpu: Infinity, wall: Infinity, stored: 0 }))
  for (let r = 0; r < rounds; r++) {
    for (const [k, c] of cases.entries()) {
      const c0 = cpuS()
      const t0 = performance.now()
      const outs = await c.way(chunks, c.level)
      const wall = (performance.now() - t0) / 1000
      const cpu = cpuS() - c0
      let stored = 0
      outs.forEach((o, i) => {
        stored += o.byteLength
        // every output must be a frame that decompresses alone to its chunk
        if (r === 0 && i % 97 === 0 && !zstdDecompressSync(o).equals(chunks[i])) throw new Error(`${c.name}: chunk ${i} does not round-trip`)
      })
      if (cpu < best[k].cpu) best[k] = { cpu, wall, stored }
    }
  }
  return cases.map((c, k) => {
    const row = { way: c.name, level: c.level, cpuS: round(best[k].cpu, 3) ?? 0, wallS: round(best[k].wall, 3) ?? 0, stored: best[k].stored }
    say(`   ${c.name.padEnd(14)} level ${c.level}: ${row.cpuS} CPU-s (wall ${row.wallS} s), ${row.stored} B stored`)
    return row
  })
}

async function main (): Promise<number> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'max-mb': { type: 'string' }, rounds: { type: 'string' }, out: { type: 'string' } } })
  const tree = positionals[0] ?? '/var/tmp/holdfast-corpus/linux-source-6.1'
  const rounds = Number(values.rounds ?? 5)
  warmCache(tree)
  const { chunks, files, bytes } = sampleChunks(tree, Number(values['max-mb'] ?? 200) * 1e6)
  say(`== ${files} files, ${chunks.length} chunks, ${bytes} bytes from ${tree}`)
  const ways = [['sync-per-call', syncPerCall], ['sync-reused', syncReused], ['async-reused', asyncReused], ['stream-end', streamEnd], ['stream-flush', streamFlush], ['kept-context', keptContext]] as const
  const rows = await measureAll(ways.map(([name, way]) => ({ name, way, level: 3 })), chunks, rounds)
  const levels = [1, 2, 3, 4, 6]
  const levelRows = await measureAll(levels.map(level => ({ name: 'kept-context', way: keptContext, level })), chunks, rounds)
  const curve = []
  for (const row of levelRows) {
    const outs = await keptContext(chunks, row.level)
    // raw storage for chunks zstd does not shrink (needs a flag in the formats; see docs)
    let incompressible = 0
    let saved = 0
    outs.forEach((o, i) => { if (o.byteLength >= chunks[i].byteLength) { incompressible++; saved += o.byteLength - chunks[i].byteLength } })
    curve.push({ ...row, ratio: round(bytes / row.stored, 3), mbPerCpuS: round(bytes / 1e6 / row.cpuS, 0), incompressible, savedIfRaw: saved })
  }
  const out = { bench: 'codec-options', machine: machineFacts(), tree, files, chunks: chunks.length, bytes, ways: rows, curve }
  const json = JSON.stringify(out, null, 2)
  if (values.out !== undefined) writeFileSync(values.out, json + '\n')
  process.stdout.write(json + '\n')
  return 0
}

process.exitCode = await main()
