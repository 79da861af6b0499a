/**
 * Minimal structured logging: one line per event, scoped by component, to stderr. Daemons
 * log; libraries take a Logger so tests can silence or capture them.
 */
export interface Logger {
  info: (msg: string, fields?: Record<string, unknown>) => void
  warn: (msg: string, fields?: Record<string, unknown>) => void
  error: (msg: string, fields?: Record<string, unknown>) => void
  debug: (msg: string, fields?: Record<string, unknown>) => void
  child: (scope: string) => Logger
}

type Level = 'debug' | 'info' | 'warn' | 'error'
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export function createLogger (scope: string, minLevel: Level = (process.env.HOLDFAST_LOG as Level | undefined) ?? 'info', write: (line: string) => void = line => { process.stderr.write(line + '\n') }): Logger {
  const min = order[minLevel] ?? order.info
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (order[level] < min) return
    const extra = fields === undefined ? '' : ' ' + Object.entries(fields).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ')
    write(`${new Date().toISOString()} ${level.padEnd(5)} [${scope}] ${msg}${extra}`)
  }
  return {
    info: (m, f) => { emit('info', m, f) },
    warn: (m, f) => { emit('warn', m, f) },
    error: (m, f) => { emit('error', m, f) },
    debug: (m, f) => { emit('debug', m, f) },
    child: (sub) => createLogger(`${scope}:${sub}`, minLevel, write)
  }
}

function formatValue (v: unknown): string {
  if (typeof v === 'string') return /\s/.test(v) ? JSON.stringify(v) : v
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  return JSON.stringify(v)
}

export const silentLogger: Logger = {
  info: () => {}, warn: () => {}, error: () => {}, debug: () => {}, child: () => silentLogger
}
