/**
 * `holdfast peers`: fleet health (state, last seen, last good backup, bytes waiting, rate, and
 * why an endpoint is not being backed up), `--overdue` for cron and monitoring, `--watch` for a
 * live view, and `peers add|remove` for peers that mDNS cannot reach. Registered in main.ts.
 */
import type { Command } from '../command.js'
import { print, socketHelp, socketOptions, socketPath } from '../socket.js'
import { HoldfastError } from '../../util/errors.js'
import { systemClock } from '../../util/clock.js'
import { bytes, shortId, table } from '../format.js'
import { callManager, type PeerListRow } from '../../admin/api.js'

const SOCKET_HELP = socketHelp('manager')
/** The watch view redraws this often. */
const WATCH_REFRESH_MS = 1_000
/** One refresh's call to the manager: a busy manager must not freeze the view for long. */
const CALL_TIMEOUT_MS = 10_000

const UNIT_MS: Record<string, number> = { s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 }

/** --overdue-after: "90s", "30min", "48h", "2d" (fractions allowed: "1.5h"). */
export function parseOverdueAfter (text: string, flag = '--overdue-after'): number {
  const m = /^(\d+(?:\.\d+)?)(s|min|h|d)$/.exec(text.trim())
  const ms = m === null ? Number.NaN : Math.round(Number(m[1]) * UNIT_MS[m[2]])
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new HoldfastError('ADMIN_BAD_REQUEST', `${flag} needs a number and a unit (s, min, h, d), e.g. 48h or 30min; not '${text}'`)
  return ms
}

/** "3m ago", "never": how long ago, from a span the manager measured on its own clock. */
function agoText (ms: number | undefined): string {
  if (ms === undefined) return 'never'
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.round(s / 60)}m ago`
  if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`
  return `${(s / 86400).toFixed(1)}d ago`
}

function rateText (n: number): string { return `${bytes(n)}/s` }

/** A central config the agent refused, and why (`holdfast config show` has the rest). */
function configText (r: PeerListRow): string {
  return r.configError === undefined || r.configWanted === undefined ? '' : `config v${r.configWanted} refused: ${r.configError}`
}

/**
 * The table. `now` is the CLI's clock, for "last seen" (a wall-clock time the manager sent);
 * the last good backup's age comes from the manager. `width` truncates lines (a TTY).
 */
export function renderPeers (rows: PeerListRow[], now: number, width?: number): string {
  if (rows.length === 0) return 'no peers found yet'
  // a static peer is "seen" when it was listed; only an answer says it is there
  const seen = (r: PeerListRow): string => { const at = r.source === 'static' ? r.lastContact : r.lastSeen; return at === undefined ? 'never' : agoText(now - at) }
  const lines = table(['NAME', 'PEER', 'STATE', 'LAST SEEN', 'LAST GOOD BACKUP', 'WAITING', 'RATE', 'OVERDUE', 'WHY NOT BACKING UP'],
    rows.map(r => {
      const h = r.health
      if (h === undefined) return [r.name || '-', shortId(r.peerId), r.role, seen(r), '-', '-', '-', '', `(${r.role}, not backed up)`]
      const last = h.lastGoodAt === undefined ? 'never' : `${agoText(h.lastGoodAgeMs)}`
      const why = h.state === 'backing up' ? `pulling${h.mode === undefined ? '' : ` (${h.mode})`}, budget ${rateText(h.targetRate ?? 0)}` : h.why ?? ''
      return [r.name || '-', shortId(r.peerId), h.state, seen(r), last, bytes(r.pendingBytes), h.state === 'backing up' ? rateText(h.rate) : '-', h.overdue ? 'OVERDUE' : '', [why, configText(r)].filter(t => t !== '').join('; ')]
    })).split('\n')
  return (width === undefined ? lines : lines.map(l => l.length > width ? `${l.slice(0, Math.max(1, width - 1))}…` : l)).join('\n')
}

async function fetchRows (values: Record<string, unknown>): Promise<PeerListRow[]> {
  const overdueAfter = typeof values['overdue-after'] === 'string' ? parseOverdueAfter(values['overdue-after']) : undefined
  const rows = await callManager(socketPath(values, 'manager'), 'peers', overdueAfter === undefined ? {} : { overdueAfterMs: overdueAfter }, { timeoutMs: CALL_TIMEOUT_MS })
  return values.overdue === true ? rows.filter(r => r.health?.overdue === true) : rows
}

/**
 * Redraws until SIGINT/SIGTERM: a full-screen table on a TTY, else (or with --json) one line
 * per refresh. A refresh in flight finishes first (bounded by the call's timeout).
 */
async function watch (values: Record<string, unknown>): Promise<number> {
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort() }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const tty = process.stdout.isTTY && values.json !== true
  try {
    while (!stop.signal.aborted) {
      const rows = await fetchRows(values)
      if (stop.signal.aborted) break
      if (values.json === true) {
        process.stdout.write(JSON.stringify(rows) + '\n')
      } else {
        const when = new Date().toLocaleTimeString()
        const head = `holdfast peers${values.overdue === true ? ' --overdue' : ''}: ${rows.length} ${rows.length === 1 ? 'peer' : 'peers'}, ${rows.filter(r => r.health?.overdue === true).length} overdue  (${when}; Ctrl-C to stop)`
        const body = values.overdue === true && rows.length === 0 ? 'no endpoint is overdue' : renderPeers(rows, Date.now(), tty ? process.stdout.columns : undefined)
        // home and clear-to-end, not a full clear: no flicker between frames
        process.stdout.write(tty ? `\x1b[H${head}\x1b[K\n\n${body.split('\n').join('\x1b[K\n')}\x1b[K\n\x1b[J` : `${head}\n${body}\n\n`)
      }
      try { await systemClock.sleep(WATCH_REFRESH_MS, stop.signal) } catch { break }
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  return 0
}

export const peerCommands: Record<string, Command> = {
  peers: {
    summary: 'fleet health: each endpoint\'s state, last backup and why not; peers add|remove',
    usage: `holdfast peers [--overdue] [--overdue-after DURATION] [--watch] [options]
holdfast peers add MULTIADDR [options]
holdfast peers remove PEER_ID|MULTIADDR [options]
holdfast peers approve|revoke PEER_ID [options]

Lists every peer the manager knows: STATE (online, offline, backing up, waiting), when it was
last seen, its last good backup (a pull that left nothing waiting) and its age, the bytes it
has staged and not yet sent, the rate of a running pull, and, when it is not being backed up,
why (outside its window and not idle, budget exhausted, waiting for a slot, backing off after
an error, unreachable; with the error). OVERDUE: the last good backup is older than
manager.overdueAfterHours (default 48 h).
  --overdue               list only overdue endpoints; exit 1 when there is any (for cron)
  --overdue-after D       the threshold for this call: 90s, 30min, 48h, 2d
  --watch                 redraw every second until Ctrl-C (with --json: one JSON line per refresh)
  add MULTIADDR           dial this agent (/ip4/<addr>/tcp/<port>/p2p/<peer id>) where mDNS
                          does not reach it; kept in the manager's data dir (static-peers.json)
  remove ID|MULTIADDR     stop dialling a peer added with 'peers add'
  approve ID              a pending host (holds the fleet key, not enrolled or not yet approved)
                          is backed up from now on
  revoke ID               cut a host off for good: its connections closed, its dials refused
                          (kept across restarts); its backups stay restorable
STATE pending: a host that holds the fleet key but was never approved; it is not pulled.
${SOCKET_HELP}`,
    options: { ...socketOptions, overdue: { type: 'boolean' }, 'overdue-after': { type: 'string' }, watch: { type: 'boolean' } },
    run: async (values, positionals) => {
      const [sub, arg, ...extra] = positionals
      if (sub !== undefined) {
        if (sub !== 'add' && sub !== 'remove' && sub !== 'approve' && sub !== 'revoke') throw new HoldfastError('ADMIN_BAD_REQUEST', `peers: unknown subcommand '${sub}' (add, remove, approve or revoke)`)
        if (arg === undefined || extra.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', `peers ${sub} takes one ${sub === 'add' ? 'multiaddr' : sub === 'remove' ? 'peer id or multiaddr' : 'peer id'}`)
        const socket = socketPath(values, 'manager')
        if (sub === 'approve' || sub === 'revoke') {
          const r = await callManager(socket, sub === 'approve' ? 'peers-approve' : 'peers-revoke', { peerId: arg })
          print(values, r, () => `${r.peerId}: ${r.state}${r.state === 'revoked' ? ' (connections closed, dials refused; its backups are kept)' : ''}`)
        } else if (sub === 'add') {
          const r = await callManager(socket, 'peers-add', { address: arg })
          print(values, r, () => r.added ? `added ${r.address}\n  the manager dials it now, and after a restart` : `${r.address} was listed already`)
        } else {
          const r = await callManager(socket, 'peers-remove', { target: arg })
          print(values, r, () => `removed ${r.removed.join(', ')}`)
        }
        return 0
      }
      if (values.watch === true) return await watch(values)
      const rows = await fetchRows(values)
      print(values, rows, () => values.overdue === true && rows.length === 0 ? 'no endpoint is overdue' : renderPeers(rows, Date.now()))
      return values.overdue === true && rows.length > 0 ? 1 : 0
    }
  }
}
