/**
 * A Holdfast fleet on the LAN test bed: the manager and each agent a separate CLI process in
 * its own host namespace, listening on the host's 198.18.0.x address, finding each other over
 * mDNS across the bridge (no static peers). The admin CLI reaches each daemon through its
 * Unix socket, which does not depend on the network namespace.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { TestFleet, type AgentHandle } from './fleet.js'
import type { LanBed, LanHost } from './lan.js'

export interface LanAgent extends AgentHandle { host: LanHost }

export interface LanFleet {
  fleet: TestFleet
  manager: LanHost
  agents: LanAgent[]
}

export interface LanFleetOptions {
  agents: number
  /** Per-agent folder contents; the folder is made empty first. */
  fill: (folder: string, index: number) => void
  pullInterval?: number
  bandwidth?: number
  /** Seconds between mDNS re-queries (config mdns.queryIntervalSeconds). */
  queryInterval?: number
  /** Edits an agent's config before it starts. */
  agentConfig?: (c: Record<string, unknown>) => void
  /** Edits the manager's config before it starts (e.g. its deploy policy). */
  managerConfig?: (c: Record<string, unknown>) => void
}

export async function startLanFleet (bed: LanBed, root: string, options: LanFleetOptions): Promise<LanFleet> {
  const fleet = new TestFleet(root)
  const manager = bed.addHost('mgr')
  await fleet.init({ listen: '/ip4/0.0.0.0/tcp/0', pullInterval: options.pullInterval, bandwidth: options.bandwidth })
  if (options.queryInterval !== undefined) {
    const q = options.queryInterval
    fleet.patchConfig(fleet.managerConfig, c => { c.mdns = { ...(c.mdns as object), queryIntervalSeconds: q } })
  }
  if (options.managerConfig !== undefined) fleet.patchConfig(fleet.managerConfig, options.managerConfig)
  const agents: LanAgent[] = []
  for (let i = 0; i < options.agents; i++) {
    const host = bed.addHost(`a${i + 1}`)
    const folder = join(root, `data-a${i + 1}`)
    mkdirSync(folder, { recursive: true })
    options.fill(folder, i)
    const handle = await fleet.addAgent(`a${i + 1}`, folder, { listen: '/ip4/0.0.0.0/tcp/0' })
    if (options.agentConfig !== undefined) fleet.patchConfig(handle.config, options.agentConfig)
    agents.push({ ...handle, host })
  }
  await fleet.startManager({ prefix: bed.wrap(manager, []) })
  await Promise.all(agents.map(async a => { await fleet.startAgent(a, { prefix: bed.wrap(a.host, []) }) }))
  return { fleet, manager, agents }
}
