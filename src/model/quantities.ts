/**
 * Sizes and rates as people write them in config files (`512MiB`, `20Mbit`, `10MiB/s`), and
 * budget profiles by time of day. Shared by the config checks and the manager's scheduler, so
 * a value is read one way everywhere.
 */
import { HoldfastError } from '../util/errors.js'
import { parseUploadWindows, type UploadWindows } from './upload-window.js'

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  bit: 1 / 8,
  kbit: 1e3 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
  kbps: 1e3 / 8,
  mbps: 1e6 / 8,
  gbps: 1e9 / 8
}

/**
 * Parses a size (`512MiB`, `2GB`, `100`) or, with `/s` allowed, a rate (`20Mbit`, `10MiB/s`,
 * `100Mbps`) into bytes (per second). Bits are decimal (a 100 Mbit link), `KiB` etc. binary.
 * Throws CONFIG_INVALID for anything else, negative values included.
 */
export function parseByteQuantity (text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)(\/s)?\s*$/i.exec(text)
  const factor = m === null ? undefined : UNITS[(m[2] as string).toLowerCase()]
  if (m === null || factor === undefined) throw new HoldfastError('CONFIG_INVALID', `'${text}' is not a ${what} (e.g. 20Mbit, 10MiB/s, 512KiB)`, { value: text })
  return Math.floor(Number(m[1]) * factor)
}

export function parseRate (text: string): number { return parseByteQuantity(text, 'rate') }

export interface BudgetProfile {
  windows: UploadWindows
  bytesPerSecond: number
}

/**
 * Parses `{ "08:00-18:00": "20Mbit", "18:00-08:00": "100Mbit" }`: each key is a window spec
 * (days allowed: `Mon-Fri 08:00-18:00`), evaluated in the manager's local time; the first
 * matching key in the object's order wins. `0` pauses pulls in that period.
 */
export function parseBudgetProfiles (profiles: Record<string, string>): BudgetProfile[] {
  return Object.entries(profiles).map(([window, rate]) => ({ windows: parseUploadWindows(window), bytesPerSecond: parseRate(rate) }))
}

