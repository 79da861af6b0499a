/**
 * How much the way chunk frames are written costs on Holdfast's libp2p stack (TCP + Noise with
 * the fleet prologue + yamux, createHoldfastNode), between two processes on 127.0.0.1. The
 * frames have the sizes corpus A's chunks have after zstd (one per small file, ~1 MiB chunks
 * of big files, divided by the corpus's compression ratio); the payload is random.
 *
 *   node dist/bench/transport-frames.js [CORPUS_DIR] [--out FILE]
 *
 * Modes (the sender's side; the receiver is FrameReader, as in FetchClient):
 *   two-sends   writeFrame() as the fetch service uses it today: header, then payload, each a
 *               stream.send() → each a yamux frame, a Noise message and a socket write, and
 *               the receiver's yamux answers every data frame with a window update
 *   one-send    header and payload concatenated: one stream.send() per chunk
 *   coalesce    frames appended to a 256 KiB buffer, one stream.send() when it fills
 * Reported: wall time, and CPU seconds of the sender and of the receiver.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { createHoldfastNode, type HoldfastNode } from '../src/node/libp2p-node.js'
import { FrameReader, writeFrame } from '../src/protocols/framing.js'
import { ensureCorpus, machineFacts, procSample, round, say, treeSizes } from './support.js'

const PROTOCOL = '/holdfast-bench/frames/1'
const MODES = ['two-sends', 'one-send', 'coalesce'] as const
type Mode = typeof MODES[number]
const COALESCE_BYTES = 256 * 1024

async function node (fleetKey: string): Promise<HoldfastNode> {
  return await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
}

/** Child: serves frames of the given sizes in the mode asked for. */
async function serve (fleetKey: string, sizes: number[]): Promise<void> {
  const n = await node(fleetKey)
  const payload = randomBytes(5 * 1024 * 1024)
  await n.handle(PROTOCOL, (stream: Stream) => {
    void (async () => {
      const reader = new FrameReader(stream)
      const req = JSON.parse(Buffer.from(await reader.expect(1024, 'request')).toString()) as { mode: Mode }
      const header = (len: number): Buffer => { const h = Buffer.allocUnsafe(4 + 37); h.writeUInt32BE(37 + len, 0); h[4] = 1; return h }
      let pending: Buffer[] = []
      let pendingBytes = 0
      const flush = async (): Promise<void> => {
        if (pendingBytes === 0) return
        const data = Buffer.concat(pending, pendingBytes)
        pending = []
        pendingBytes = 0
        if (!stream.send(data)) await stream.onDrain()
      }
      for (const size of sizes) {
        const body = payload.subarray(0, size)
        if (req.mode === 'two-sends') {
          const frame = Buffer.allocUnsafe(37 + size)
          frame[0] = 1
          body.copy(frame, 37)
          await writeFrame(stream, frame)
        } else if (req.mode === 'one-send') {
          const frame = Buffer.concat([header(size), body])
          if (!stream.send(frame)) await stream.onDrain()
        } else {
          pending.push(header(size), body)
          pendingBytes += 41 + size
          if (pendingBytes >= COALESCE_BYTES) await flush()
        }
      }
      await flush()
      const end = Buffer.alloc(9)
      end.writeUInt32BE(5, 0)
      if (!stream.send(end)) await stream.onDrain()
      await stream.close()
    })().catch(err => { stream.abort(err as Error) })
  })
  process.send?.({ addr: n.getMultiaddrs()[0].toString() })
  process.on('message', (m: { cmd: string }) => { if (m.cmd === 'stop') void Promise.resolve(n.stop()).then(() => process.exit(0)) })
}

async function main (): Promise<number> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { out: { type: 'string' }, serve: { type: 'string' }, ratio: { type: 'string' } } })
  const corpus = ensureCorpus(positionals[0])
  const ratio = Number(values.ratio ?? 5.06)
  // chunk sizes as staged: files ≤ 256 KiB are one chunk; bigger ones ~1 MiB chunks
  const sizes: number[] = []
  for (const s of treeSizes(corpus)) {
    if (s <= 256 * 1024) sizes.push(Math.max(16, Math.round(s / ratio)))
    else { let left = s; while (left > 0) { const c = Math.min(left, 1024 * 1024); sizes.push(Math.max(16, Math.round(c / ratio))); left -= c } }
  }
  if (values.serve !== undefined) { await serve(values.serve, sizes); return 0 }
  const fleetKey = randomBytes(32).toString('hex')
  const child = fork(fileURLToPath(import.meta.url), [corpus, '--serve', fleetKey, '--ratio', String(ratio)], { stdio: 'inherit' })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 15 * 60_000)
  try {
    const addr = await new Promise<string>((resolve, reject) => {
      child.once('message', (m: { addr: string }) => { resolve(m.addr) })
      child.once('exit', code => { reject(new Error(`server exited ${code}`)) })
    })
    const total = sizes.reduce((a, b) => a + b, 0)
    say(`== transport: ${sizes.length} frames, ${(total / 2 ** 20).toFixed(0)} MiB, to ${addr}`)
    const results: Record<string, unknown> = {}
    for (const mode of [...MODES, ...[...MODES].reverse()]) {
      // a fresh connection per run, so no yamux window or connection state carries over
      const client = await node(fleetKey)
      const childBefore = procSample(child.pid)
      const selfBefore = process.cpuUsage()
      const t = performance.now()
      const stream = await client.dialProtocol(multiaddr(addr), PROTOCOL)
      const reqBytes = Buffer.from(JSON.stringify({ mode }))
      await writeFrame(stream, reqBytes)
      const reader = new FrameReader(stream)
      let frames = 0
      let bytes = 0
      for (;;) {
        const f = await reader.expect(8 * 1024 * 1024, 'frame')
        if (f.byteLength === 5) break
        frames++
        bytes += f.byteLength - 37
      }
      const wallS = (performance.now() - t) / 1000
      const self = process.cpuUsage(selfBefore)
      const childAfter = procSample(child.pid)
      await stream.close().catch(() => {})
      await client.stop()
      if (frames !== sizes.length || bytes !== total) throw new Error(`${mode}: got ${frames} frames, ${bytes} bytes`)
      const r = {
        wallS: round(wallS),
        senderCpuS: childBefore === undefined || childAfter === undefined ? undefined : round(childAfter.userS + childAfter.sysS - childBefore.userS - childBefore.sysS),
        receiverCpuS: round((self.user + self.system) / 1e6),
        MiBps: round(total / 2 ** 20 / wallS, 0)
      }
      say(`   ${mode.padEnd(10)} ${JSON.stringify(r)}`)
      results[`${mode}${results[mode] === undefined ? '' : ' (again)'}`] = r
    }
    const out = { bench: 'transport-frames', machine: machineFacts(), frames: sizes.length, bytes: total, results }
    process.stdout.write(JSON.stringify(out, null, 2) + '\n')
    if (values.out !== undefined) writeFileSync(values.out, JSON.stringify(out, null, 2) + '\n')
    return 0
  } finally {
    clearTimeout(timer)
    child.send({ cmd: 'stop' })
    await new Promise<void>(resolve => { if (child.exitCode !== null) resolve(); else { child.once('exit', () => { resolve() }); setTimeout(() => { child.kill('SIGKILL'); resolve() }, 5000) } })
  }
}

process.exitCode = await main().catch(err => {
  say(`transport-frames failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
  return 1
})
