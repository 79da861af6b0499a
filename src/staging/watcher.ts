/**
 * File-system events for promptness. A watched folder reports "something changed here" and
 * the agent runs its scan a settle time later; the scan decides what changed, so a lost or
 * merged event costs nothing but latency, and the periodic reconcile scan still catches
 * whatever events missed (overflowed queues, changes while the agent was down).
 *
 * chokidar keeps state per file (≈ 3.4 KB each, PERF-NOTES.md), so in 'auto' mode a folder
 * with more entries than the limit is left to the reconcile scan alone, keeping the agent's
 * memory bounded whatever the tree.
 */
import { watch, type FSWatcher } from 'chokidar'
import type { FolderConfig, WatchMode } from '../config/config.js'
import type { Logger } from '../util/log.js'

export type FolderWatchState = 'events' | 'scan'

export interface WatcherInit {
  mode: WatchMode
  maxEntries: number
  onChange: (folder: string) => void
  log: Logger
}

export class FolderWatchers {
  private readonly watchers = new Map<string, FSWatcher>()
  private readonly states = new Map<string, FolderWatchState>()

  constructor (private readonly init: WatcherInit) {}

  /** Starts or stops watching a folder to match its size; idempotent. */
  async update (folder: FolderConfig, entries: number): Promise<void> {
    const want: FolderWatchState = this.init.mode === 'events' || (this.init.mode === 'auto' && entries <= this.init.maxEntries) ? 'events' : 'scan'
    if (this.states.get(folder.name) === want) return
    this.states.set(folder.name, want)
    if (want === 'scan') {
      await this.watchers.get(folder.name)?.close()
      this.watchers.delete(folder.name)
      this.init.log.info('watching by reconcile scans only', { folder: folder.path, entries, limit: this.init.maxEntries })
      return
    }
    const watcher = watch(folder.path, { ignoreInitial: true, persistent: true, followSymlinks: false, ignorePermissionErrors: true, atomic: false })
    watcher.on('all', () => { this.init.onChange(folder.name) })
    watcher.on('error', (err: unknown) => {
      this.init.log.warn('file watcher failed; the reconcile scan covers this folder', { folder: folder.path, err: String(err) })
      this.states.set(folder.name, 'scan')
      void watcher.close()
      this.watchers.delete(folder.name)
    })
    this.watchers.set(folder.name, watcher)
    this.init.log.info('watching for file-system events', { folder: folder.path, entries })
  }

  state (folder: string): FolderWatchState { return this.states.get(folder) ?? 'scan' }

  async stop (): Promise<void> {
    await Promise.all([...this.watchers.values()].map(async w => await w.close()))
    this.watchers.clear()
  }
}
