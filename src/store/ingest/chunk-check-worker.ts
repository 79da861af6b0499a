/**
 * Verification worker: decompresses each received chunk (to exactly its declared length,
 * through one kept zstd context) and checks that its SHA-256 is its id. Runs off the
 * manager's main thread, which keeps the network and the catalog moving meanwhile. The
 * batch's buffer goes back with the reply (transferred), for the caller to append from.
 */
import { parentPort } from 'node:worker_threads'
import { ChunkDecompressor, verifyChunkWith } from '../../codec/chunk-decompressor.js'
import { CHUNK_ID_BYTES } from '../../model/entry.js'
import { describeError } from '../../util/errors.js'

/** meta: per chunk offset, compressed length, raw length (u32); ids: 32 bytes per chunk. */
export interface CheckRequest { batch: number, count: number, buffer: ArrayBuffer, meta: ArrayBuffer, ids: ArrayBuffer }
export interface CheckReply { batch: number, buffer: ArrayBuffer, failure?: { index: number, message: string } }

const decompressor = new ChunkDecompressor(256 * 1024)

parentPort?.on('message', (req: CheckRequest) => {
  const data = new Uint8Array(req.buffer)
  const meta = new Uint32Array(req.meta)
  const ids = new Uint8Array(req.ids)
  let failure: CheckReply['failure']
  for (let i = 0; i < req.count; i++) {
    try {
      const id = ids.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES)
      verifyChunkWith(decompressor, id, data.subarray(meta[i * 3], meta[i * 3] + meta[i * 3 + 1]), meta[i * 3 + 2])
    } catch (err) {
      failure = { index: i, message: describeError(err) }
      break
    }
  }
  parentPort?.postMessage({ batch: req.batch, buffer: req.buffer, failure } satisfies CheckReply, [req.buffer])
})
