/**
 * Summarises V8 .cpuprofile files (from `node --cpu-prof`, e.g. `npm run bench -- --profile DIR`):
 * self time by function, by source file/package, and inclusive time of the functions that
 * matter, optionally only inside a time window.
 *
 *   node dist/bench/cpuprofile-top.js FILE.cpuprofile... [--from US] [--to US] [--top N] [--json]
 *
 * --from/--to are CLOCK_MONOTONIC microseconds (process.hrtime.bigint() / 1000n, the clock V8
 * stamps profiles with); e2e-corpus records its phase boundaries on that clock (clockMarks).
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

export interface ProfileSummary {
  file: string
  windowMs: number
  sampledMs: number
  idleMs: number
  bySelf: Array<{ fn: string, ms: number }>
  byFile: Array<{ file: string, ms: number }>
  byInclusive: Array<{ fn: string, ms: number }>
}

function shortUrl (url: string): string {
  if (url === '') return '(native)'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return url.slice(dist + '/dist/'.length)
  return url.replace(/^file:\/\//, '')
}

function fnKey (n: ProfileNode): string {
  const f = n.callFrame
  const name = f.functionName === '' ? '(anonymous)' : f.functionName
  if (f.url === '') return name
  return `${name} ${shortUrl(f.url)}:${f.lineNumber + 1}`
}

export function summarise (file: string, options: { from?: number, to?: number, top?: number } = {}): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const n of p.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  const self = new Map<string, number>()
  const files = new Map<string, number>()
  const incl = new Map<string, number>()
  let t = p.startTime
  let sampled = 0
  let idle = 0
  const from = options.from ?? -Infinity
  const to = options.to ?? Infinity
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]
    // a sample's weight is the gap to the next sample
    const dt = (i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1] : 0) / 1000
    if (t < from || t > to) continue
    const node = byId.get(p.samples[i])
    if (node === undefined) continue
    const name = node.callFrame.functionName
    if (name === '(idle)') { idle += dt; continue }
    sampled += dt
    const key = fnKey(node)
    self.set(key, (self.get(key) ?? 0) + dt)
    const fk = name === '(garbage collector)' || name === '(program)' ? name : shortUrl(node.callFrame.url)
    files.set(fk, (files.get(fk) ?? 0) + dt)
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = fnKey(byId.get(id) as ProfileNode)
      if (seen.has(k)) continue
      seen.add(k)
      incl.set(k, (incl.get(k) ?? 0) + dt)
    }
  }
  const top = options.top ?? 25
  const sorted = (m: Map<string, number>): Array<[string, number]> => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
  const windowMs = (Math.min(to, p.endTime) - Math.max(from, p.startTime)) / 1000
  return {
    file,
    windowMs: Math.round(windowMs),
    sampledMs: Math.round(sampled),
    idleMs: Math.round(idle),
    bySelf: sorted(self).map(([fn, ms]) => ({ fn, ms: Math.round(ms) })),
    byFile: sorted(files).map(([f, ms]) => ({ file: f, ms: Math.round(ms) })),
    byInclusive: sorted(incl).filter(([k]) => k !== '(root)').map(([fn, ms]) => ({ fn, ms: Math.round(ms) }))
  }
}

function print (s: ProfileSummary): void {
  const out = (line: string): void => { process.stdout.write(line + '\n') }
  out(`== ${s.file}: window ${s.windowMs} ms, busy ${s.sampledMs} ms, idle ${s.idleMs} ms`)
  out('-- self time by source file / package')
  for (const r of s.byFile) out(`${String(r.ms).padStart(8)} ms  ${r.file}`)
  out('-- self time by function')
  for (const r of s.bySelf) out(`${String(r.ms).padStart(8)} ms  ${r.fn}`)
  out('-- inclusive time by function')
  for (const r of s.byInclusive) out(`${String(r.ms).padStart(8)} ms  ${r.fn}`)
}

if (process.argv[1]?.endsWith('cpuprofile-top.js') === true) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { from: { type: 'string' }, to: { type: 'string' }, top: { type: 'string' }, json: { type: 'boolean' } } })
  const opts = {
    from: values.from === undefined ? undefined : Number(values.from),
    to: values.to === undefined ? undefined : Number(values.to),
    top: values.top === undefined ? undefined : Number(values.top)
  }
  const summaries = positionals.map(f => summarise(f, opts))
  if (values.json === true) process.stdout.write(JSON.stringify(summaries, null, 2) + '\n')
  else for (const s of summaries) print(s)
}
