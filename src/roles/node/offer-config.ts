/**
 * A bare node's agent config from a deploy offer: the node's own identity, data directory,
 * fleet key, listen addresses, mDNS and pinned managers, with the manager's central settings
 * for what to protect and how. Later central changes reach the agent over
 * /holdfast/config/1 and are merged over this file (model/central-settings.ts).
 */
import { statSync } from 'node:fs'
import { resolveConfig, type HoldfastConfig } from '../../config/config.js'
import { centralFolders, type CentralAgentSettings } from '../../model/central-settings.js'
import { HoldfastError } from '../../util/errors.js'

/** The raw agent.json a node writes for itself, checked as the agent would load it. */
export function agentConfigFromOffer (node: HoldfastConfig, settings: CentralAgentSettings): { raw: Record<string, unknown>, config: HoldfastConfig } {
  // a folder rule (homes:uid>=1000) is expanded here, on the node, against its own users
  const folders = centralFolders(settings)
  if (folders.length === 0) throw new HoldfastError('CONFIG_INVALID', 'the offer protects no folders', { key: 'folders' })
  // A folder that is not there would be an agent that reports nothing: refused now, so the
  // manager shows why and the node stays bare.
  for (const f of folders) {
    let isDir = false
    try { isDir = statSync(f.path).isDirectory() } catch {}
    if (!isDir) throw new HoldfastError('CONFIG_INVALID', `folder ${f.path} does not exist on this host`, { key: 'folders', path: f.path })
  }
  const agent: Record<string, unknown> = {
    folders: folders.map(f => ({ path: f.path, ...(f.name === undefined ? {} : { name: f.name }), ...(f.ignore === undefined ? {} : { ignore: f.ignore }) }))
  }
  for (const key of ['settleSeconds', 'scanIntervalSeconds', 'spoolCapBytes', 'uploadWindows', 'idleLoadPerCpu', 'idleInputSeconds', 'workers'] as const) {
    if (settings[key] !== undefined) agent[key] = settings[key]
  }
  const raw: Record<string, unknown> = {
    role: 'agent',
    name: node.name,
    dataDir: node.dataDir,
    listen: node.listen,
    fleetKey: node.fleetKey,
    managers: node.managers,
    mdns: node.mdns,
    staticPeers: node.staticPeers,
    adminSocket: node.adminSocket,
    agent
  }
  return { raw, config: resolveConfig(raw, node.dataDir) }
}
