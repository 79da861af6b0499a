/**
 * What `holdfast node` runs: the bare node until its manager gives it the agent role, then the
 * agent in its place — in the same process, with the same identity, data directory and pinned
 * manager. A node that already has its agent.json (a restart, or after a package switch) runs
 * the agent straight away.
 */
import { existsSync, renameSync } from 'node:fs'
import { loadConfig, type HoldfastConfig } from '../../config/config.js'
import { Agent } from '../agent/agent.js'
import { BareNode, agentConfigFile } from './node.js'
import { HoldfastError, describeError } from '../../util/errors.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../util/log.js'

interface Role { start: () => Promise<void>, stop: () => Promise<void> }

export class NodeDaemon {
  private current?: Role
  private switching?: Promise<void>
  private stopped = false

  /**
   * `restart`: a new version is current; the process should exit for its supervisor to restart it.
   * `installRoot`: where packages go (`--install-root`); without one the host takes none.
   */
  constructor (private readonly config: HoldfastConfig, private readonly clock: Clock, private readonly log: Logger, private readonly restart: () => void, private readonly installRoot?: string) {}

  async start (): Promise<void> {
    const file = agentConfigFile(this.config.dataDir)
    if (existsSync(file)) {
      const agentConfig = loadConfig(file)
      // the agent config a node wrote for itself: anything else is not ours to run
      if (agentConfig.role !== 'agent' || agentConfig.dataDir !== this.config.dataDir) throw new HoldfastError('CONFIG_INVALID', `${file} is not the agent config of this node (role ${agentConfig.role}, data dir ${agentConfig.dataDir})`)
      this.log.info('this node has been given the agent role; starting the agent', { config: file })
      await this.runAgent(agentConfig)
      return
    }
    await this.runBare()
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.switching?.catch(() => {})
    await this.current?.stop()
  }

  private async runBare (failure?: string): Promise<void> {
    const bare = new BareNode(this.config, this.clock, this.log.child('node'), {
      becomeAgent: config => { this.switching = this.becomeAgent(bare, config) },
      restart: () => { this.restart() }
    }, failure, this.installRoot)
    this.current = bare
    await bare.start()
  }

  private async becomeAgent (bare: BareNode, config: HoldfastConfig): Promise<void> {
    await bare.stop()
    if (this.stopped) return
    try {
      await this.runAgent(config)
    } catch (err) {
      // The agent could not start (its port, a folder gone since the offer): back to bare,
      // with the reason shown, and the config set aside so the manager may offer again.
      const why = describeError(err)
      this.log.error('the agent did not start; back to a bare node', { err: why })
      try { renameSync(agentConfigFile(this.config.dataDir), `${agentConfigFile(this.config.dataDir)}.failed`) } catch {}
      await this.runBare(`the agent did not start: ${why}`)
    }
  }

  private async runAgent (config: HoldfastConfig): Promise<void> {
    const agent = new Agent(config, this.clock, this.log.child('agent'), { restart: () => { this.restart() }, installRoot: this.installRoot })
    this.current = agent
    try {
      await agent.start()
    } catch (err) {
      await agent.stop().catch(() => {})
      throw err
    }
  }
}
