/**
 * Verification worker: decompresses each received chunk (bounded by its declared length) and
 * checks that its SHA-256 is its id. Runs off the manager's main thread, which keeps the
 * network and the catalog moving meanwhile.
 */
import { parentPort } from 'node:worker_threads'
import { verifyChunk } from '../../codec/chunk-codec.js'
import { describeError } from '../../util/errors.js'

export interface CheckItem { id: Uint8Array, offset: number, length: number, rawLength: number }
export interface CheckRequest { batch: number, buffer: ArrayBuffer, items: CheckItem[] }
export interface CheckReply { batch: number, failure?: { index: number, message: string } }

parentPort?.on('message', (req: CheckRequest) => {
  const data = new Uint8Array(req.buffer)
  let failure: CheckReply['failure']
  for (let i = 0; i < req.items.length; i++) {
    const item = req.items[i]
    try {
      verifyChunk(item.id, data.subarray(item.offset, item.offset + item.length), item.rawLength)
    } catch (err) {
      failure = { index: i, message: describeError(err) }
      break
    }
  }
  parentPort?.postMessage({ batch: req.batch, failure } satisfies CheckReply)
})
