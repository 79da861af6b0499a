/**
 * Helpers for the benchmarks: the corpus (extracted once from Debian's linux-source-6.1),
 * machine facts, per-process CPU and peak RSS from /proc, bounded child processes, sizes on
 * disk. No timing tool beyond performance.now() and /proc.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { availableParallelism, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'

export const CORPUS_TARBALL = '/usr/src/linux-source-6.1.tar.xz'
export const CORPUS_HOME = '/var/tmp/holdfast-corpus'
export const DEFAULT_CORPUS = join(CORPUS_HOME, 'linux-source-6.1')

export function say (line = ''): void { process.stderr.write(line + '\n') }

/** The corpus directory: the argument, else HOLDFAST_CORPUS, else the tarball extracted once. */
export function ensureCorpus (explicit?: string): string {
  const wanted = explicit ?? process.env.HOLDFAST_CORPUS
  if (wanted !== undefined && wanted !== '') {
    if (!statSync(wanted).isDirectory()) throw new Error(`corpus ${wanted} is not a directory`)
    return wanted
  }
  if (existsSync(DEFAULT_CORPUS)) return DEFAULT_CORPUS
  if (!existsSync(CORPUS_TARBALL)) {
    throw new Error(`${CORPUS_TARBALL} is missing: apt-get install -y linux-source-6.1 (or pass a corpus directory)`)
  }
  mkdirSync(CORPUS_HOME, { recursive: true })
  // Extract beside the final place and rename, so an interrupted extraction is never taken
  // for the corpus.
  const tmp = mkdtempSync(join(CORPUS_HOME, '.extract-'))
  say(`extracting ${CORPUS_TARBALL} into ${CORPUS_HOME} (once)`)
  const r = spawnSync('tar', ['-xJf', CORPUS_TARBALL, '-C', tmp], { stdio: 'inherit', timeout: 15 * 60_000 })
  if (r.status !== 0) { rmSync(tmp, { recursive: true, force: true }); throw new Error('extracting the corpus failed') }
  renameSync(join(tmp, 'linux-source-6.1'), DEFAULT_CORPUS)
  rmSync(tmp, { recursive: true, force: true })
  return DEFAULT_CORPUS
}

export interface TreeFacts { files: number, dirs: number, symlinks: number, other: number, fileBytes: number, largestFile: number, medianFile: number }

/** Counts a tree without following symlinks. */
export function treeFacts (root: string): TreeFacts {
  const facts: TreeFacts = { files: 0, dirs: 0, symlinks: 0, other: 0, fileBytes: 0, largestFile: 0, medianFile: 0 }
  const sizes: number[] = []
  const stack = [root]
  while (stack.length > 0) {
    const dir = stack.pop() as string
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, d.name)
      if (d.isDirectory()) { facts.dirs++; stack.push(p) } else if (d.isSymbolicLink()) facts.symlinks++
      else if (d.isFile()) {
        const size = lstatSync(p).size
        facts.files++
        facts.fileBytes += size
        sizes.push(size)
        if (size > facts.largestFile) facts.largestFile = size
      } else facts.other++
    }
  }
  sizes.sort((a, b) => a - b)
  facts.medianFile = sizes.length === 0 ? 0 : sizes[Math.floor(sizes.length / 2)]
  return facts
}

/** Sizes of every regular file under root, in walk order. */
export function treeSizes (root: string): number[] {
  const sizes: number[] = []
  const stack = [root]
  while (stack.length > 0) {
    const dir = stack.pop() as string
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, d.name)
      if (d.isDirectory()) stack.push(p); else if (d.isFile()) sizes.push(lstatSync(p).size)
    }
  }
  return sizes
}

/** Reads every file once so every measurement starts from a warm page cache. GNU tar skips
 * reading when its archive is /dev/null, hence the pipe. */
export function warmCache (dir: string): number {
  const t = performance.now()
  const r = spawnSync('sh', ['-c', 'tar -cf - -C "$1" . | cat > /dev/null', 'sh', dir], { stdio: 'ignore', timeout: 10 * 60_000 })
  if (r.status !== 0) throw new Error(`warming the page cache over ${dir} failed`)
  return (performance.now() - t) / 1000
}

/** Flushes dirty pages so one phase's writeback does not land in the next phase's clock. */
export function syncDisks (): void {
  spawnSync('sync', [], { stdio: 'ignore', timeout: 5 * 60_000 })
}

export interface MachineFacts { nproc: number, cpuModel: string, memTotalGiB: number, node: string, kernel: string, restic: string, date: string }

export function machineFacts (): MachineFacts {
  let cpuModel = 'unknown'
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m !== null) cpuModel = m[1].trim()
  } catch {}
  const kernel = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout?.trim() ?? 'unknown'
  const resticOut = spawnSync('restic', ['version'], { encoding: 'utf8' })
  return {
    nproc: availableParallelism(),
    cpuModel,
    memTotalGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    node: process.version,
    kernel,
    restic: resticOut.status === 0 ? resticOut.stdout.trim() : 'not installed',
    date: new Date().toISOString()
  }
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim() ?? '100') || 100

/** childUserS/childSysS: CPU of its children that it has waited for (cutime, cstime). */
export interface ProcSample { userS: number, sysS: number, childUserS: number, childSysS: number, vmHwmMiB: number, vmRssMiB: number }

/** CPU seconds of a process and of its reaped children (user + sys), from a sample. */
export function cpuWithChildren (s: ProcSample | undefined): number | undefined {
  return s === undefined ? undefined : s.userS + s.sysS + s.childUserS + s.childSysS
}

/** CPU seconds (all threads) and peak/current RSS (all threads: they share it) of a live process, from /proc. */
export function procSample (pid: number | undefined): ProcSample | undefined {
  if (pid === undefined) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // fields after the command name, which is in parentheses and may contain spaces
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(rest[11])
    const stime = Number(rest[12])
    const cutime = Number(rest[13])
    const cstime = Number(rest[14])
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s*(\\d+) kB`, 'm').exec(status)?.[1] ?? 0)
    return { userS: utime / CLK_TCK, sysS: stime / CLK_TCK, childUserS: cutime / CLK_TCK, childSysS: cstime / CLK_TCK, vmHwmMiB: kb('VmHWM') / 1024, vmRssMiB: kb('VmRSS') / 1024 }
  } catch {
    return undefined
  }
}

/**
 * CPU seconds (user + sys) of a live process's threads, summed by thread name (comm), plus
 * `exited`: what threads that are gone used (the process total less the live threads).
 */
export function threadCpu (pid: number | undefined): Record<string, number> {
  const out: Record<string, number> = {}
  if (pid === undefined) return out
  const parse = (stat: string): { comm: string, cpuS: number } => {
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { comm, cpuS: (Number(rest[11]) + Number(rest[12])) / CLK_TCK }
  }
  try {
    const total = parse(readFileSync(`/proc/${pid}/stat`, 'utf8')).cpuS
    let live = 0
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const t = parse(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'))
        out[t.comm] = Math.round(((out[t.comm] ?? 0) + t.cpuS) * 100) / 100
        live += t.cpuS
      } catch {}
    }
    out.exited = Math.round((total - live) * 100) / 100
  } catch {}
  return out
}

/**
 * Resets a process's peak RSS (VmHWM) to its current RSS (proc(5), clear_refs "5"), so the
 * peak of one phase can be read on its own. False where the kernel refuses.
 */
export function resetPeakRss (pid: number | undefined): boolean {
  if (pid === undefined) return false
  try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

/** The CPUs each thread of a process may run on (Cpus_allowed_list), distinct lists, sorted:
 * the proof that a pinned daemon and its worker threads stayed on their side. */
export function cpusAllowed (pid: number | undefined): string[] {
  if (pid === undefined) return []
  const lists = new Set<string>()
  let tasks: string[] = []
  try { tasks = readdirSync(`/proc/${pid}/task`) } catch { return [] }
  for (const tid of tasks) {
    try {
      const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))
      if (m !== null) lists.add(m[1])
    } catch {}
  }
  return [...lists].sort()
}

/** Machine-wide CPU seconds busy and in total (all cores) since boot, from /proc/stat. */
export function cpuTotals (): { busyS: number, totalS: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f
  const busy = user + nice + system + irq + softirq + (steal ?? 0)
  return { busyS: busy / CLK_TCK, totalS: (busy + idle + iowait) / CLK_TCK }
}

/**
 * Waits (bounded) until the machine has been nearly idle for a short window, so another
 * process's work does not land in a measurement. Returns how long it waited and the busy
 * fraction of the last window (above maxBusy when it gave up waiting).
 */
export async function waitQuiet (options: { maxWaitMs: number, windowMs?: number, maxBusy?: number }): Promise<{ waitedS: number, busy: number }> {
  const started = performance.now()
  const windowMs = options.windowMs ?? 2000
  const maxBusy = options.maxBusy ?? 0.1
  let busy = 1
  for (;;) {
    const a = cpuTotals()
    await new Promise(resolve => setTimeout(resolve, windowMs))
    const b = cpuTotals()
    busy = (b.busyS - a.busyS) / Math.max(1e-9, b.totalS - a.totalS)
    if (busy <= maxBusy || performance.now() - started >= options.maxWaitMs) break
  }
  return { waitedS: Math.round(performance.now() - started) / 1000, busy: Math.round(busy * 1000) / 1000 }
}

export function cpuDelta (a: ProcSample | undefined, b: ProcSample | undefined): number | undefined {
  if (a === undefined || b === undefined) return undefined
  return Math.round((b.userS + b.sysS - a.userS - a.sysS) * 100) / 100
}

/** Bytes of every regular file under dir (like du -sb without directory blocks). */
export function duBytes (path: string): number {
  let st
  try { st = lstatSync(path) } catch { return 0 }
  if (st.isFile()) return st.size
  if (!st.isDirectory()) return 0
  let n = 0
  for (const name of readdirSync(path)) n += duBytes(join(path, name))
  return n
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      server.close(() => { resolve(port) })
    })
  })
}

export interface Timed { code: number, stdout: string, stderr: string, wallS: number, childUserS?: number, childSysS?: number, peakRssMiB?: number }

/** GNU time(1): the command's peak RSS from wait4's rusage (exact, unlike polling /proc). */
export const GNU_TIME = '/usr/bin/time'

/**
 * Runs a command with a deadline, timing its wall clock; CPU seconds of the command come from
 * bash's `times` builtin (children's user and system time), printed to fd 3. `prefix` runs it
 * through another command (taskset); with `peakRss` it runs under GNU time, whose maximum
 * resident set size (KiB) goes to a file read afterwards.
 */
export async function runTimed (argv: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs: number, prefix?: string[], peakRss?: boolean }): Promise<Timed> {
  const script = '"$@"; rc=$?; times >&3; exit $rc'
  const rssDir = options.peakRss === true ? mkdtempSync(join(tmpdir(), 'holdfast-time-')) : undefined
  const rssFile = rssDir === undefined ? undefined : join(rssDir, 'maxrss')
  const full = [...(rssFile === undefined ? [] : [GNU_TIME, '-f', '%M', '-o', rssFile]), ...(options.prefix ?? []), ...argv]
  return await new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn('bash', ['-c', script, 'bash', ...full], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { ...process.env, ...options.env } })
    let stdout = ''
    let stderr = ''
    let times = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const fd3 = child.stdio[3] as NodeJS.ReadableStream | null
    fd3?.setEncoding('utf8')
    fd3?.on('data', (d: string) => { times += d })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${argv.join(' ')} took longer than ${options.timeoutMs / 1000} s`))
    }, options.timeoutMs)
    child.on('error', err => { clearTimeout(timer); reject(err) })
    child.on('close', code => {
      clearTimeout(timer)
      const wallS = (performance.now() - started) / 1000
      // `times` prints two lines: the shell's own, then its children's "XmY.YYYs XmY.YYYs"
      const lines = times.trim().split('\n')
      const parse = (s: string | undefined): number | undefined => {
        const m = s === undefined ? null : /^(\d+)m([\d.]+)s$/.exec(s)
        return m === null ? undefined : Number(m[1]) * 60 + Number(m[2])
      }
      const [cu, cs] = (lines[1] ?? '').split(/\s+/)
      let peakRssMiB: number | undefined
      if (rssDir !== undefined && rssFile !== undefined) {
        try {
          const kib = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop())
          if (Number.isFinite(kib) && kib > 0) peakRssMiB = kib / 1024
        } catch {}
        rmSync(rssDir, { recursive: true, force: true })
      }
      resolve({ code: code ?? 1, stdout, stderr, wallS, childUserS: parse(cu), childSysS: parse(cs), peakRssMiB })
    })
  })
}

/**
 * What creating a small file costs right now in `parent` (µs per file): 2,000 files of 4 KiB
 * in 20 directories, then removed (unless `keep`: a delete slows later file creation on this
 * disk, so a probe just before a timed restore is left for the caller to remove afterwards).
 * On this VM's ext4 the figure swings from ~20 µs to ~1 ms per file between directories and
 * minutes, and restores are made of file creations, so each restore figure is reported with a
 * probe taken just before it.
 */
export function createProbe (parent: string, keep = false): number {
  const dir = mkdtempSync(join(parent, 'create-probe-'))
  const buf = Buffer.alloc(4096, 0x61)
  const t = performance.now()
  for (let d = 0; d < 20; d++) {
    mkdirSync(join(dir, String(d)))
    for (let f = 0; f < 100; f++) writeFileSync(join(dir, String(d), `f${f}`), buf, { flag: 'wx' })
  }
  const us = (performance.now() - t) * 1000 / 2000
  if (!keep) rmSync(dir, { recursive: true, force: true })
  return Math.round(us)
}

/** The commit of the tree being measured, and whether src/ differs from it. */
export function sourceRevision (projectRoot: string): { commit: string, srcDirty: boolean | undefined } {
  const rev = spawnSync('git', ['-C', projectRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' })
  if (rev.status !== 0) return { commit: process.env.HOLDFAST_BENCH_COMMIT ?? 'not a git checkout', srcDirty: undefined }
  const st = spawnSync('git', ['-C', projectRoot, 'status', '--porcelain', '--', 'src', 'bin', 'package.json'], { encoding: 'utf8' })
  return { commit: rev.stdout.trim(), srcDirty: st.stdout.trim() !== '' }
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

export function round (x: number | undefined, digits = 2): number | undefined {
  if (x === undefined || !Number.isFinite(x)) return x
  const f = 10 ** digits
  return Math.round(x * f) / f
}

export function mib (bytes: number): string { return `${(bytes / 2 ** 20).toFixed(1)} MiB` }

/** A tree of `files` small files (1-4 KiB of varied text), 100 to a directory (bench:agent's
 * small-file tree: 10 × corpus A's file count is the 786k tree of issue 12). */
export function makeSmallTree (root: string, files: number): void {
  const line = 'the quick brown fox jumps over the lazy dog 0123456789\n'
  for (let i = 0; i < files; i++) {
    const dir = join(root, `d${Math.floor(i / 10_000)}`, `e${Math.floor(i / 100) % 100}`)
    if (i % 100 === 0) mkdirSync(dir, { recursive: true })
    const size = 1024 + ((i * 2654435761) >>> 0) % 3072
    writeFileSync(join(dir, `f${i}.txt`), `${i}\n` + line.repeat(Math.ceil(size / line.length)).slice(0, size))
  }
}
