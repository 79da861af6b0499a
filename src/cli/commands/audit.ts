/** `holdfast audit`: the manager's audit log (roles/manager/audit-log.ts), read over the admin socket. */
import { callManager } from '../../admin/api.js'
import { table } from '../format.js'
import type { Command } from '../command.js'
import { print, socketHelp, socketOptions, socketPath } from '../socket.js'
import { parseAt } from './store.js'
import type { AuditEntry } from '../../roles/manager/audit-log.js'

function actorText (actor: AuditEntry['actor']): string {
  if (actor.uid === 'network') return 'network'
  if (actor.uid === 'unknown') return 'unknown'
  return `uid ${actor.uid}${actor.user === undefined ? '' : ` (${actor.user})`}${actor.pid === undefined ? '' : ` pid ${actor.pid}`}`
}

export const auditCommand: Command = {
  summary: 'show the manager\'s audit log (restores, prunes, retention changes, backup-now…)',
  usage: `holdfast audit [--since TIME] [--json] [options]

Entries at or after TIME (an ISO date or date-time; local time without a zone), oldest first.
ACTOR is the uid (user name, pid) of the process that sent the command over the admin
socket, or "unknown" when it could not be found (--json says why): see docs/security.md.
${socketHelp()}`,
  options: { ...socketOptions, since: { type: 'string' } },
  run: async (values) => {
    const since = typeof values.since === 'string' ? parseAt(values.since) : undefined
    const rows = await callManager(socketPath(values, 'manager'), 'audit', since === undefined ? {} : { since })
    print(values, rows, () => rows.length === 0
      ? 'no audit entries'
      : table(['TIME', 'ACTOR', 'COMMAND', 'TARGET', 'OUTCOME'], rows.map(r => [new Date(r.time).toISOString(), actorText(r.actor), r.command, r.target, r.outcome === 'ok' ? 'ok' : `failed: ${r.detail ?? ''}`])))
    return 0
  }
}
