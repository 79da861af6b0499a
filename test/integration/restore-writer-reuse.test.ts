/**
 * The manager's restore writer fed the way restore.ts feeds it: each stored chunk a view of
 * one pack-read buffer the reader reuses for the next chunk (PackWindow). The sink must take
 * the bytes at hand-over; real files, real writer threads, bytes compared.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RestoreSink, prepareTarget } from '../../src/restore-writer/restore-sink.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import type { StagedEntry } from '../../src/model/entry.js'

const MTIME = 1_700_000_000_000_000_000n

describe('integration: the restore writer with a reader that reuses its buffer', function () {
  this.timeout(60_000)
  let root: string
  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-restore-reuse-')) })
  afterEach(() => { rmSync(root, { recursive: true, force: true }) })

  it('every file restored byte for byte though each chunk is a view of a buffer overwritten by the next read', async () => {
    // 40 files of 3 distinct chunks each (random bytes: compressed they differ in length too)
    const files: Array<{ name: string, chunks: Buffer[] }> = []
    for (let f = 0; f < 40; f++) {
      const chunks: Buffer[] = []
      for (let c = 0; c < 3; c++) chunks.push(Buffer.from(Array.from({ length: 1000 + 37 * f + c }, (_, i) => (i * 31 + f * 7 + c * 101 + (i >> 3)) & 0xff)))
      files.push({ name: `f${f}`, chunks })
    }
    const stored = new Map<string, Buffer>()
    for (const { chunks } of files) for (const c of chunks) stored.set(Buffer.from(chunkId(c)).toString('hex'), Buffer.from(compressChunk(c)))
    // the reader's one buffer, as PackWindow's: what it returned last is overwritten now
    const shared = Buffer.alloc(64 * 1024)
    const read = (_index: number, id: Uint8Array): { rawLength: number, compressed: Uint8Array } => {
      const data = stored.get(Buffer.from(id).toString('hex')) as Buffer
      shared.fill(0xee)
      data.copy(shared)
      return { rawLength: 0, compressed: shared.subarray(0, data.byteLength) }
    }
    const target = join(root, 'target')
    prepareTarget(target)
    const sink = new RestoreSink({ target })
    for (const { name, chunks } of files) {
      const e: StagedEntry = { folder: 'home', path: Buffer.from(name), type: 'file', mode: 0o100644, mtimeNs: MTIME, size: chunks.reduce((n, c) => n + c.byteLength, 0), chunks: Buffer.concat(chunks.map(c => chunkId(c))) }
      await sink.addStored(e, (index, id) => ({ ...read(index, id), rawLength: chunks[index].byteLength }))
    }
    await sink.drain()
    const summary = sink.finish()
    assert.deepEqual(summary.errors, [])
    assert.equal(summary.files, files.length)
    for (const { name, chunks } of files) assert.ok(readFileSync(join(target, 'home', name)).equals(Buffer.concat(chunks)), `${name} restored as written`)
  })
})
