/** `holdfast deploy`: give bare nodes the agent role, roll upgrades out, show where each host is. */
import { resolve } from 'node:path'
import type { Command } from '../command.js'
import { print, socketHelp, socketOptions, socketPath } from '../socket.js'
import { callManager, type DeployOutcome } from '../../admin/api.js'
import { HoldfastError } from '../../util/errors.js'
import { shortId, table } from '../format.js'

function outcomeLine (o: DeployOutcome): string {
  return `${o.name || shortId(o.peerId)} (${shortId(o.peerId)}): ${o.ok ? `agent ${o.version ?? ''}` : `failed: ${o.message ?? o.code ?? ''}`}`
}

export const deployCommand: Command = {
  summary: 'give a bare node the agent role, upgrade agents in batches, or show versions and deploy states',
  usage: `holdfast deploy NODE [options]
holdfast deploy --version VERSION [--batch N] [--health-timeout S] [options]
holdfast deploy status [options]
holdfast deploy package add TARBALL --version VERSION [options]

NODE         offers the agent role to a bare node now (peer id or name, as \`holdfast peers\`
             shows it), with the settings in manager.json's manager.deploy.settings; needed
             for nodes the policy (manager.deploy.auto: none | approved | a name glob) does
             not cover. The node checks the offer, writes its agent config and starts the
             agent; the manager pulls it from then on. Exit 1 if the node refused or failed.
--version V  upgrades every agent not on V, N at a time (--batch, default 1), with the signed
             package for V (<manager data dir>/packages/V.json; the manager's own version is
             built on demand). Each host must come back announcing V within --health-timeout
             seconds (default 120). The first batch with a failure ends the run: the hosts
             that failed and why, and those not attempted, are listed; exit 1.
status       every node and agent: version and deploy state (bare, deploying, agent, failed).
package add TARBALL --version V
             puts a package built elsewhere (buildPackage, src/deploy/package-build.ts, from
             another checkout or release) on the shelf as version V, signed with this
             manager's key; then \`holdfast deploy --version V\` offers it. A version already
             on the shelf is refused. The hosts report V once they run it.
${socketHelp('manager')}`,
  options: { ...socketOptions, version: { type: 'string' }, batch: { type: 'string' }, 'health-timeout': { type: 'string' } },
  run: async (values, positionals) => {
    const socket = socketPath(values, 'manager')
    if (positionals[0] === 'package') {
      const [, verb, tarball, ...extra] = positionals
      if (verb !== 'add' || tarball === undefined || extra.length > 0 || typeof values.version !== 'string') throw new HoldfastError('ADMIN_BAD_REQUEST', 'deploy package add TARBALL --version V')
      const p = await callManager(socket, 'deploy-package-add', { tarball: resolve(tarball), version: values.version }, { timeoutMs: 3600_000 })
      print(values, p, () => `shelved ${p.version}: ${p.size} bytes, sha256 ${p.sha256}\n  ${p.tarball}\nOffer it with: holdfast deploy --version ${p.version}`)
      return 0
    }
    if (typeof values.version === 'string') {
      if (positionals.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'deploy --version upgrades the fleet; it takes no node')
      const batch = values.batch === undefined ? undefined : Number(values.batch)
      if (batch !== undefined && (!Number.isSafeInteger(batch) || batch < 1)) throw new HoldfastError('ADMIN_BAD_REQUEST', '--batch must be a whole number ≥ 1')
      const health = values['health-timeout'] === undefined ? undefined : Number(values['health-timeout'])
      if (health !== undefined && (!Number.isFinite(health) || health <= 0)) throw new HoldfastError('ADMIN_BAD_REQUEST', '--health-timeout must be a number of seconds > 0')
      const r = await callManager(socket, 'deploy-upgrade', { version: values.version, ...(batch === undefined ? {} : { batch }), ...(health === undefined ? {} : { healthTimeoutMs: Math.round(health * 1000) }) }, { timeoutMs: 24 * 3600_000 })
      print(values, r, () => [
        r.batches.length === 0 ? `every agent runs ${r.version} already` : `upgrade to ${r.version}, ${r.batch} at a time: ${r.ok ? 'done' : 'STOPPED at a failed batch'}`,
        ...r.batches.flatMap((b, i) => [`batch ${i + 1}:`, ...b.map(o => `  ${outcomeLine(o)}`)]),
        ...(r.notAttempted.length === 0 ? [] : ['not attempted (still on their version):', ...r.notAttempted.map(h => `  ${h.name || shortId(h.peerId)} (${shortId(h.peerId)}) ${h.version}`)])
      ].join('\n'))
      return r.ok ? 0 : 1
    }
    if (values.batch !== undefined || values['health-timeout'] !== undefined) throw new HoldfastError('ADMIN_BAD_REQUEST', '--batch and --health-timeout go with --version')
    const [target, ...extra] = positionals
    if (target === 'status' && extra.length === 0) {
      const rows = await callManager(socket, 'deploy-status', {})
      print(values, rows, () => rows.length === 0 ? 'no nodes or agents found' : table(['NAME', 'PEER', 'ROLE', 'VERSION', 'STATE'], rows.map(r => [r.name || '-', shortId(r.peerId), r.role, r.version || '-', r.state === 'failed' ? `failed: ${r.why ?? ''}` : r.state])))
      return 0
    }
    if (target === undefined || extra.length > 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'deploy NODE | deploy --version V [--batch N] | deploy status')
    const o = await callManager(socket, 'deploy', { node: target }, { timeoutMs: 3600_000 })
    print(values, o, () => outcomeLine(o))
    return o.ok ? 0 : 1
  }
}
