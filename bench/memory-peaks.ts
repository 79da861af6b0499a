/**
 * Where the daemons' peak memory is (issue 12's RSS rows): the two-host split (agent on CPU 0,
 * manager on CPU 1) through a first backup and a full restore, and optionally the agent alone
 * staging a small-file tree. For each daemon and phase it prints the peak VmRSS with its
 * file-backed and anonymous parts at that moment (/proc/<pid>/status, sampled every 50 ms), and
 * the largest JS heap each V8 isolate committed in the phase (the daemons run with --trace-gc;
 * one isolate per thread that runs JS: the daemon's and each worker's). What anonymous memory
 * the heaps do not account for is native: zstd contexts, read and write buffers, SQLite page
 * caches, malloc arenas.
 *
 *   node dist/bench/memory-peaks.js [CORPUS_DIR] [--small-tree DIR] [--out FILE]
 *
 * Timings mean nothing here (--trace-gc writes a line per GC); run it beside nothing else
 * anyway, so that the page cache and the disk behave as in the timed run.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { TestFleet } from '../test/support/fleet.js'
import { adminCall } from '../src/admin/admin-socket.js'
import { ensureCorpus, freePort, resetPeakRss, say } from './support.js'

const LONG_MS = 3600_000

interface RssPoint { rssMiB: number, anonMiB: number, fileMiB: number }
interface PhasePeak extends RssPoint {
  /** The largest heap each isolate committed in the phase (MB as V8 prints it), by isolate. */
  heapsCommittedMB: Record<string, number>
  heapsCommittedSumMB: number
}

function statusMiB (pid: number): RssPoint | undefined {
  let text: string
  try { text = readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return undefined }
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0)
  return { rssMiB: kib('VmRSS') / 1024, anonMiB: kib('RssAnon') / 1024, fileMiB: (kib('RssFile') + kib('RssShmem')) / 1024 }
}

/** Samples a process's RSS until stopped; keeps the point with the largest VmRSS. */
function sampler (pid: number): { stop: () => RssPoint } {
  let peak: RssPoint = { rssMiB: 0, anonMiB: 0, fileMiB: 0 }
  const take = (): void => { const p = statusMiB(pid); if (p !== undefined && p.rssMiB > peak.rssMiB) peak = p }
  take()
  const timer = setInterval(take, 50)
  return { stop: () => { clearInterval(timer); take(); return peak } }
}

/**
 * The largest committed heap per isolate in a slice of a daemon's log. --trace-gc lines look
 * like `[pid:0xISOLATE]  123 ms: Scavenge 10.5 (15.2) -> 8.1 (16.2) MB, ...`.
 */
function heapsIn (logFile: string, from: number, to: number): Record<string, number> {
  const text = readFileSync(logFile).subarray(from, to).toString('utf8')
  const heaps: Record<string, number> = {}
  for (const m of text.matchAll(/\[\d+:(0x[0-9a-f]+)\][^\n]*?([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB/g)) {
    const committed = Math.max(Number(m[3]), Number(m[5]))
    heaps[m[1]] = Math.max(heaps[m[1]] ?? 0, committed)
  }
  return heaps
}

function logSize (file: string): number { try { return statSync(file).size } catch { return 0 } }

async function phase (name: string, procs: Array<{ key: string, pid: number, log: string }>, work: () => Promise<void>): Promise<Record<string, PhasePeak>> {
  const starts = procs.map(p => { resetPeakRss(p.pid); return logSize(p.log) })
  const samplers = procs.map(p => sampler(p.pid))
  await work()
  const out: Record<string, PhasePeak> = {}
  procs.forEach((p, i) => {
    const peak = samplers[i].stop()
    const heaps = heapsIn(p.log, starts[i], logSize(p.log))
    const sum = Object.values(heaps).reduce((a, b) => a + b, 0)
    out[p.key] = { ...round(peak), heapsCommittedMB: heaps, heapsCommittedSumMB: Math.round(sum * 10) / 10 }
    say(`   ${name}, ${p.key}: peak RSS ${out[p.key].rssMiB} MiB = file-backed ${out[p.key].fileMiB} + anonymous ${out[p.key].anonMiB}; JS heaps committed ${out[p.key].heapsCommittedSumMB} MB over ${Object.keys(heaps).length} isolate(s): ${Object.values(heaps).map(h => h.toFixed(1)).join(', ')}`)
  })
  return out
}

function round (p: RssPoint): RssPoint {
  return { rssMiB: Math.round(p.rssMiB), anonMiB: Math.round(p.anonMiB), fileMiB: Math.round(p.fileMiB) }
}

async function main (): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'small-tree': { type: 'string' }, out: { type: 'string' }, workdir: { type: 'string' } } })
  const corpus = resolve(ensureCorpus(positionals[0]))
  const workdir = resolve(values.workdir ?? '/var/tmp')
  const results: Record<string, unknown> = { bench: 'memory-peaks', corpus, date: new Date().toISOString() }
  const root = mkdtempSync(join(workdir, 'holdfast-mem-'))
  // node refuses --trace-gc in NODE_OPTIONS: the daemons are started through a wrapper that
  // puts it on node's command line, where the daemon's re-exec keeps it (process.execArgv)
  const wrapper = join(root, 'node-trace-gc.sh')
  writeFileSync(wrapper, '#!/bin/sh\nnode="$1"; shift\nexec "$node" --trace-gc "$@"\n', { mode: 0o755 })
  const env = { prefix: [wrapper] }
  try {
    const fleet = new TestFleet(root)
    try {
      const port = await freePort()
      await fleet.init({ mdns: false, bandwidth: 10_000_000_000 })
      const agent = await fleet.addAgent('mem', corpus, { mdns: false, listen: `/ip4/127.0.0.1/tcp/${port}` })
      // the agent's peer id exists only after `join`: list it as the manager's static peer now
      fleet.patchConfig(fleet.managerConfig, c => { c.staticPeers = [`/ip4/127.0.0.1/tcp/${port}/p2p/${agent.peerId}`] })
      await fleet.startManager({ cpus: '1', ...env })
      await fleet.startAgent(agent, { cpus: '0', ...env })
      const procs = [
        { key: 'agent', pid: fleet.process('agent-mem')?.pid as number, log: fleet.logFile('agent-mem') },
        { key: 'manager', pid: fleet.process('manager')?.pid as number, log: fleet.logFile('manager') }
      ]
      say('== first backup (staging, then the pull)')
      results.firstBackup = await phase('first backup', procs, async () => {
        await adminCall(agent.socket, 'scan-now', { join: true }, { timeoutMs: LONG_MS })
        await adminCall(fleet.managerSocket, 'backup-now', { expectPeers: 1, timeoutMs: LONG_MS }, { timeoutMs: LONG_MS })
      })
      say('== full restore')
      const target = join(root, 'restored')
      results.restore = await phase('restore', procs.filter(p => p.key === 'manager'), async () => {
        await adminCall(fleet.managerSocket, 'restore', { endpoint: agent.peerId, target }, { timeoutMs: LONG_MS })
      })
    } finally {
      await fleet.stopAll()
    }
    if (values['small-tree'] !== undefined) {
      const tree = resolve(values['small-tree'])
      const fleet2 = new TestFleet(join(root, 'small'))
      try {
        await fleet2.init({ mdns: false })
        const agent = await fleet2.addAgent('small', tree, { mdns: false })
        await fleet2.startAgent(agent, { cpus: '0', ...env })
        const procs = [{ key: 'agent', pid: fleet2.process('agent-small')?.pid as number, log: fleet2.logFile('agent-small') }]
        say(`== the agent staging ${tree}`)
        results.smallTree = await phase('small-file tree', procs, async () => {
          await adminCall(agent.socket, 'scan-now', { join: true }, { timeoutMs: LONG_MS })
        })
      } finally {
        await fleet2.stopAll()
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
  const json = JSON.stringify(results, null, 2)
  if (values.out !== undefined) writeFileSync(values.out, json + '\n')
  process.stdout.write(json + '\n')
}

await main()
