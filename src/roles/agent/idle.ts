/**
 * Is this endpoint idle? Backups may then use its disk and link without anyone noticing.
 *
 * Idle means: CPU load per core below a threshold, by both the 1-minute load average and the
 * busy share of CPU time since the last look (/proc/stat deltas: the load average lags by a
 * minute and counts processes blocked on I/O), and, where the platform says, no user input
 * for a while. What Linux exposes for input, without extra dependencies (docs/architecture.md):
 *   - /proc/interrupts: per-IRQ counters; PS/2 keyboard and mouse show as i8042 (and some
 *     drivers name keyboard/mouse/touchpad). USB input shares xhci_hcd lines with disks, so it
 *     is not counted. A counter that moved since the last look means input since then.
 *   - /dev/input/event*: the kernel updates a device node's access/modification time as
 *     events are read by the desktop; stat needs no read permission.
 *   - logind's IdleHint is only on D-Bus (`loginctl show-session -p IdleHint`), not in the
 *     /run/systemd/sessions files; it needs a session manager that sets it, so it is not used.
 * A headless machine (a server, this CI host) has neither: input is then unknown, and CPU
 * load alone decides.
 */
import { cpus, loadavg } from 'node:os'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../../util/clock.js'

export interface IdleSample {
  /** 1-minute load average per core. */
  loadPerCpu: number
  /** Busy share of all CPU time since the previous sample (0..1), if measurable. */
  busyShare?: number
  /** Milliseconds since the last user input, if the platform tells. */
  inputIdleMs?: number
}

/** Where idleness comes from; tests inject their own. */
export interface IdleProbe {
  sample: () => IdleSample
}

export interface IdleReport {
  idle: boolean
  load: number
  inputIdleSeconds?: number
}

export interface IdleThresholds {
  loadPerCpu: number
  inputIdleMs: number
}

export function judgeIdle (s: IdleSample, t: IdleThresholds): IdleReport {
  const cpuQuiet = s.loadPerCpu < t.loadPerCpu && (s.busyShare === undefined || s.busyShare < t.loadPerCpu)
  const inputQuiet = s.inputIdleMs === undefined || s.inputIdleMs >= t.inputIdleMs
  const report: IdleReport = { idle: cpuQuiet && inputQuiet, load: Math.round(Math.max(s.loadPerCpu, s.busyShare ?? 0) * 1000) / 1000 }
  if (s.inputIdleMs !== undefined) report.inputIdleSeconds = Math.floor(s.inputIdleMs / 1000)
  return report
}

const INPUT_IRQ = /i8042|keyboard|mouse|touchpad/i

/** Reads /proc and /dev on Linux; elsewhere only the load average. */
export class LinuxIdleProbe implements IdleProbe {
  private lastCpu?: { busy: number, total: number }
  private lastInputCount?: number
  private lastInputAt?: number

  constructor (private readonly clock: Clock, private readonly paths = { proc: '/proc', devInput: '/dev/input' }) {}

  sample (): IdleSample {
    const cores = Math.max(1, cpus().length)
    const out: IdleSample = { loadPerCpu: (loadavg()[0] ?? 0) / cores }
    const busy = this.busyShare()
    if (busy !== undefined) out.busyShare = busy
    const input = this.inputIdleMs()
    if (input !== undefined) out.inputIdleMs = input
    return out
  }

  private busyShare (): number | undefined {
    try {
      const line = readFileSync(join(this.paths.proc, 'stat'), 'utf8').split('\n', 1)[0] ?? ''
      const f = line.trim().split(/\s+/).slice(1).map(Number)
      if (f.length < 5 || f.some(n => !Number.isFinite(n))) return undefined
      // user nice system idle iowait irq softirq steal: idle and iowait are not busy
      const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
      const busy = total - (f[3] ?? 0) - (f[4] ?? 0)
      const prev = this.lastCpu
      this.lastCpu = { busy, total }
      if (prev === undefined || total <= prev.total) return undefined
      return (busy - prev.busy) / (total - prev.total)
    } catch {
      return undefined
    }
  }

  private inputIdleMs (): number | undefined {
    const now = this.clock.now()
    let latest: number | undefined
    try {
      const text = readFileSync(join(this.paths.proc, 'interrupts'), 'utf8')
      let count = 0
      let found = false
      for (const line of text.split('\n')) {
        if (!INPUT_IRQ.test(line)) continue
        found = true
        for (const n of line.split(':')[1]?.trim().split(/\s+/) ?? []) if (/^\d+$/.test(n)) count += Number(n)
      }
      if (found) {
        if (this.lastInputCount !== undefined && count !== this.lastInputCount) this.lastInputAt = now
        this.lastInputCount = count
        this.lastInputAt ??= now // unknown before the first look: count from then
        latest = this.lastInputAt
      }
    } catch {}
    try {
      for (const name of readdirSync(this.paths.devInput)) {
        if (!name.startsWith('event')) continue
        const st = statSync(join(this.paths.devInput, name))
        const t = Math.max(st.atimeMs, st.mtimeMs)
        if (latest === undefined || t > latest) latest = t
      }
    } catch {}
    return latest === undefined ? undefined : Math.max(0, now - latest)
  }
}

/** Samples the probe at most once per `minIntervalMs` (each manifest request asks). */
export class IdleMonitor {
  private last?: { at: number, report: IdleReport }

  constructor (private readonly probe: IdleProbe, private readonly thresholds: IdleThresholds, private readonly clock: Clock, private readonly minIntervalMs = 5_000) {}

  report (): IdleReport {
    const now = this.clock.now()
    if (this.last !== undefined && now - this.last.at < this.minIntervalMs && now >= this.last.at) return this.last.report
    const report = judgeIdle(this.probe.sample(), this.thresholds)
    this.last = { at: now, report }
    return report
  }
}
