/**
 * `holdfast config get|set|show`: the agent settings the manager sets centrally
 * (roles/manager/central-config.ts), fleet-wide (`all`) or per endpoint; agents get them on
 * their next contact. Registered in main.ts.
 */
import type { Command } from '../command.js'
import { print, socketHelp, socketOptions, socketPath } from '../socket.js'
import { callManager, type AgentConfigState, type ConfigChange } from '../../admin/api.js'
import { CENTRAL_KEYS, LOCAL_ONLY_KEYS } from '../../model/central-settings.js'
import { HoldfastError } from '../../util/errors.js'
import { shortId, table } from '../format.js'

/** A value as typed: JSON when it parses (5, true, ["/srv/a"], null), else the text itself. */
export function parseConfigValue (text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

function valueText (v: unknown): string { return v === undefined ? '(unset)' : JSON.stringify(v) }

function agentLine (a: AgentConfigState): string[] {
  const state = a.error !== undefined ? `refused v${a.wanted}: ${a.error}` : a.applied === undefined ? 'not heard from yet' : a.applied === a.wanted ? 'applied' : `waiting for next contact (has v${a.applied})`
  return [a.name || '-', shortId(a.peerId), String(a.wanted), a.applied === undefined ? '-' : String(a.applied), state]
}

function changeLines (history: ConfigChange[]): string {
  return history.length === 0 ? 'no changes' : table(['VERSION', 'TIME', 'SCOPE', 'KEY', 'OLD → NEW'], history.map(c => [String(c.version), new Date(c.time).toISOString(), c.scope, c.key, `${valueText(c.old)} → ${valueText(c.new)}`]))
}

export const configCommand: Command = {
  summary: 'central agent settings: show, get and set them fleet-wide (all) or per endpoint',
  usage: `holdfast config show ENDPOINT|all [options]
holdfast config get ENDPOINT|all KEY [options]
holdfast config set ENDPOINT|all KEY VALUE [options]

Agent settings the manager keeps for the whole fleet (all) and per endpoint (its name or peer
id); an endpoint's settings are all's with its own over them, key by key. Every change gets
the next version and is kept in the history and the audit log. Agents get their settings on
their next contact and apply them at once, or refuse them (a folder that does not exist here,
a rule that names no folder) and keep what they had: \`holdfast peers\` and \`config show\` say why.
Folders set centrally are protected in addition to those in the endpoint's agent.json.

KEY: ${Object.keys(CENTRAL_KEYS).join(', ')}
  folders      a JSON list of paths or {"path", "name"?, "ignore"?: [globs]}
  folderRule   homes:uid>=N: the home directory of every local user with uid ≥ N
  VALUE is JSON where it parses (5, ["/srv/a"]), else text; null removes the key.
Kept by the endpoint, never set centrally: ${LOCAL_ONLY_KEYS.join(', ')}.
${socketHelp('manager')}`,
  options: { ...socketOptions },
  run: async (values, positionals) => {
    const [sub, endpoint, key, value, ...extra] = positionals
    const socket = socketPath(values, 'manager')
    if (sub === 'show' && endpoint !== undefined && key === undefined) {
      const r = await callManager(socket, 'config-show', { endpoint })
      print(values, r, () => {
        const own = Object.entries(r.settings)
        const lines = [`${r.scope === 'all' ? 'fleet-wide (all)' : r.scope}: version ${r.version}`]
        lines.push(own.length === 0 ? '  (nothing set)' : own.map(([k, v]) => `  ${k} = ${JSON.stringify(v)}`).join('\n'))
        if (r.effective !== undefined) {
          lines.push('', `in effect for it (all + its own): version ${r.effective.version}`)
          const eff = Object.entries(r.effective.settings)
          lines.push(eff.length === 0 ? '  (nothing set centrally: its agent.json decides)' : eff.map(([k, v]) => `  ${k} = ${JSON.stringify(v)}`).join('\n'))
        }
        if (r.agents.length > 0) lines.push('', table(['AGENT', 'PEER', 'WANTED', 'APPLIED', 'STATE'], r.agents.map(agentLine)))
        lines.push('', changeLines(r.history))
        return lines.join('\n')
      })
      return 0
    }
    if (sub === 'get' && endpoint !== undefined && key !== undefined && value === undefined) {
      const r = await callManager(socket, 'config-get', { endpoint, key })
      print(values, r, () => r.from === 'unset' ? `${key} is not set centrally for ${endpoint} (its agent.json decides)` : `${valueText(r.value)}${r.from === endpoint ? '' : `  (from ${r.from})`}`)
      return 0
    }
    if (sub === 'set' && endpoint !== undefined && key !== undefined && value !== undefined && extra.length === 0) {
      const r = await callManager(socket, 'config-set', { endpoint, key, value: parseConfigValue(value) })
      print(values, r, () => `${r.scope} ${r.key}: ${valueText(r.old)} → ${valueText(r.new)} (version ${r.version}); agents get it on their next contact`)
      return 0
    }
    throw new HoldfastError('ADMIN_BAD_REQUEST', 'config show ENDPOINT|all | config get ENDPOINT|all KEY | config set ENDPOINT|all KEY VALUE (see holdfast config --help)')
  }
}
