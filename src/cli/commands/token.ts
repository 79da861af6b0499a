/** `holdfast token create|list|revoke`: join tokens, made and checked by the running manager. */
import type { Command } from '../command.js'
import { print, socketHelp, socketOptions, socketPath } from '../socket.js'
import { callManager } from '../../admin/api.js'
import { HoldfastError } from '../../util/errors.js'
import { table } from '../format.js'
import { parseOverdueAfter } from './peers.js'

export const tokenCommand: Command = {
  summary: 'join tokens: create (one-time enrolment secrets, not the fleet key), list, revoke',
  usage: `holdfast token create [--expires DURATION] [--uses N] [options]
holdfast token list [options]
holdfast token revoke ID [options]

create   prints a token for \`holdfast join\`: a one-time enrolment secret, the manager's
         peer id and the addresses of its enrolment listener. The manager keeps only the
         secret's hash. --expires: 90s, 30min, 24h (default), 7d; --uses: hosts it may
         enrol (default 1).
list     every token the manager holds: id, expiry, uses left, live/expired/used up.
revoke   ends a token now (its id from list).
${socketHelp('manager')}`,
  options: { ...socketOptions, expires: { type: 'string' }, uses: { type: 'string' } },
  run: async (values, positionals) => {
    const [sub, arg, ...extra] = positionals
    const socket = socketPath(values, 'manager')
    if (sub === 'create' && arg === undefined) {
      const uses = values.uses === undefined ? undefined : Number(values.uses)
      if (uses !== undefined && (!Number.isSafeInteger(uses) || uses < 1)) throw new HoldfastError('ADMIN_BAD_REQUEST', '--uses must be a whole number ≥ 1')
      const expiresInMs = typeof values.expires === 'string' ? parseOverdueAfter(values.expires, '--expires') : undefined
      const r = await callManager(socket, 'token-create', { ...(expiresInMs === undefined ? {} : { expiresInMs }), ...(uses === undefined ? {} : { uses }) })
      print(values, r, () => `${r.token}\n\ntoken ${r.id}: ${r.usesLeft} use(s), expires ${new Date(r.expiresAt).toISOString()}\nOn the endpoint:  holdfast join <token> --folder <path>`)
      return 0
    }
    if (sub === 'list' && arg === undefined) {
      const rows = await callManager(socket, 'token-list', {})
      print(values, rows, () => rows.length === 0 ? 'no tokens' : table(['ID', 'CREATED', 'EXPIRES', 'USES LEFT', 'STATE'], rows.map(r => [r.id, new Date(r.createdAt).toISOString(), new Date(r.expiresAt).toISOString(), String(r.usesLeft), r.state])))
      return 0
    }
    if (sub === 'revoke' && arg !== undefined && extra.length === 0) {
      const r = await callManager(socket, 'token-revoke', { id: arg })
      print(values, r, () => `token ${r.id} revoked`)
      return 0
    }
    throw new HoldfastError('ADMIN_BAD_REQUEST', 'token create [--expires D] [--uses N] | token list | token revoke ID')
  }
}
