/**
 * Central configuration on the manager (`holdfast config get|set|show`): the settings for the
 * whole fleet (scope 'all') and per endpoint (scope: its name or peer id), kept in
 * <dataDir>/central-config.db with every change as a numbered row of its history. The version
 * of a document is the number of the last change that touched one of its scopes, so versions
 * only grow and an agent that reports an older one is sent the document again
 * (protocols/config.ts). What each agent applied, or why it refused, is tracked here in
 * memory: every visit's manifest reports it again.
 */
import { join } from 'node:path'
import { HoldfastError, describeError } from '../../util/errors.js'
import { openDatabase, transaction, type DatabaseSync } from '../../util/sqlite.js'
import { checkCentralKey, decodeCentralSettings, mergeSettings, type CentralAgentSettings, type VersionedSettings } from '../../model/central-settings.js'
import { CONFIG_LIMITS, type ConfigClient } from '../../protocols/config.js'
import type { Logger } from '../../util/log.js'
import type { PeerRecord } from './peer-table.js'

export const FLEET_SCOPE = 'all'

/** One change, as `config show` lists it and the audit log records it. */
export interface ConfigChange {
  version: number
  time: number
  scope: string
  key: string
  /** Absent: the key was not set (before) or was removed (after). */
  old?: unknown
  new?: unknown
}

/** What an agent did with its document, as the peer list shows it. */
export interface AgentConfigState {
  peerId: string
  name: string
  /** The version of the document the manager holds for it (0: none). */
  wanted: number
  /** The version it reported applied, at its last contact. */
  applied?: number
  /** Why it refused the wanted version (the agent's code and reason). */
  error?: string
}

export interface ConfigShowReply {
  scope: string
  /** This scope's own settings and the version of its last change. */
  settings: CentralAgentSettings
  version: number
  /** An endpoint's: fleet-wide merged with its own, as sent to it. */
  effective?: VersionedSettings
  agents: AgentConfigState[]
  /** This scope's changes, newest last (at most HISTORY_SHOWN). */
  history: ConfigChange[]
}

export interface ConfigGetReply {
  scope: string
  key: string
  value?: unknown
  /** Which scope the value came from; 'unset' when none sets it (the agent's own file decides). */
  from: string
  version: number
}

const HISTORY_SHOWN = 100

/** Leaves room in the request frame for the envelope around the settings. */
const MAX_DOCUMENT_BYTES = CONFIG_LIMITS.maxRequestBytes - 256

export class CentralConfigStore {
  private readonly db: DatabaseSync

  constructor (dataDir: string) {
    this.db = openDatabase(join(dataDir, 'central-config.db'))
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS setting (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (scope, key));
      CREATE TABLE IF NOT EXISTS change (version INTEGER PRIMARY KEY, time INTEGER NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, old TEXT, new TEXT);
      CREATE INDEX IF NOT EXISTS change_scope ON change (scope, version);
    `)
  }

  close (): void { this.db.close() }

  /** A scope's own settings and the version of its last change (0: never changed). */
  scope (scope: string): VersionedSettings {
    const rows = this.db.prepare('SELECT key, value FROM setting WHERE scope = ?').all(scope) as Array<{ key: string, value: string }>
    const settings = Object.fromEntries(rows.map(r => [r.key, JSON.parse(r.value) as unknown])) as CentralAgentSettings
    const row = this.db.prepare('SELECT MAX(version) AS v FROM change WHERE scope = ?').get(scope) as { v: number | null }
    return { version: row.v ?? 0, settings }
  }

  /** The document for an endpoint: fleet-wide, then by its name, then by its peer id. */
  effective (peerId: string, name: string): VersionedSettings {
    const scopes = [FLEET_SCOPE, ...(name === '' || name === FLEET_SCOPE ? [] : [name]), peerId].map(s => this.scope(s))
    return { version: Math.max(...scopes.map(s => s.version)), settings: mergeSettings(...scopes.map(s => s.settings)) }
  }

  /**
   * Sets one key of a scope (null removes it): checked as an agent will check it, recorded
   * with the next version. Returns the change (version unchanged when the value is the same).
   */
  set (scope: string, key: string, value: unknown, time: number): ConfigChange {
    checkCentralKey(key)
    // `config set all folders '["/srv/a"]'`: a bare path is a folder with the default name
    const given = key === 'folders' && Array.isArray(value) ? value.map(f => typeof f === 'string' ? { path: f } : f as unknown) : value
    const next = given === null ? undefined : (decodeCentralSettings({ [key]: given }) as Record<string, unknown>)[key]
    return transaction(this.db, () => {
      const before = this.db.prepare('SELECT value FROM setting WHERE scope = ? AND key = ?').get(scope, key) as { value: string } | undefined
      const oldText = before?.value
      const newText = next === undefined ? undefined : JSON.stringify(next)
      const old = oldText === undefined ? undefined : JSON.parse(oldText) as unknown
      if (oldText === newText) return { version: this.scope(scope).version, time, scope, key, old, new: next }
      if (newText === undefined) {
        this.db.prepare('DELETE FROM setting WHERE scope = ? AND key = ?').run(scope, key)
      } else {
        this.db.prepare('INSERT INTO setting (scope, key, value) VALUES (?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value').run(scope, key, newText)
        // the document goes to agents in one frame: it must fit with the fleet-wide settings under it
        const size = Buffer.byteLength(JSON.stringify(mergeSettings(this.scope(FLEET_SCOPE).settings, this.scope(scope).settings)))
        if (size > MAX_DOCUMENT_BYTES) throw new HoldfastError('CONFIG_INVALID', `the settings for '${scope}' would be ${size} bytes; at most ${MAX_DOCUMENT_BYTES} go to an agent`, { key })
      }
      const version = ((this.db.prepare('SELECT MAX(version) AS v FROM change').get() as { v: number | null }).v ?? 0) + 1
      this.db.prepare('INSERT INTO change (version, time, scope, key, old, new) VALUES (?, ?, ?, ?, ?, ?)').run(version, time, scope, key, oldText ?? null, newText ?? null)
      return { version, time, scope, key, old, new: next }
    })
  }

  /** Changes to the given scopes, oldest first (the newest `limit`). */
  history (scopes: string[], limit = HISTORY_SHOWN): ConfigChange[] {
    if (scopes.length === 0) return []
    const rows = this.db.prepare(`SELECT version, time, scope, key, old, new FROM change WHERE scope IN (${scopes.map(() => '?').join(', ')}) ORDER BY version DESC LIMIT ?`).all(...scopes, limit) as Array<{ version: number, time: number, scope: string, key: string, old: string | null, new: string | null }>
    return rows.reverse().map(r => {
      const c: ConfigChange = { version: r.version, time: r.time, scope: r.scope, key: r.key }
      if (r.old !== null) c.old = JSON.parse(r.old) as unknown
      if (r.new !== null) c.new = JSON.parse(r.new) as unknown
      return c
    })
  }
}

/** Delivers documents on visits and remembers what each agent made of them. */
export class ConfigDelivery {
  private readonly states = new Map<string, { applied?: number, error?: string }>()

  constructor (private readonly store: CentralConfigStore, private readonly client: ConfigClient, private readonly log: Logger) {}

  /**
   * Called on every contact, after the manifest: sends the endpoint's document when the
   * version it reports is not the one the manager holds. A failure is recorded, never thrown:
   * the visit's pull goes on.
   */
  async deliver (peer: PeerRecord, reported: number | undefined, signal: AbortSignal): Promise<void> {
    const state = this.states.get(peer.peerId) ?? {}
    this.states.set(peer.peerId, state)
    if (reported !== undefined) state.applied = reported
    const document = this.store.effective(peer.peerId, peer.name)
    if (document.version === 0 || reported === document.version) {
      if (reported === document.version) state.error = undefined
      return
    }
    try {
      const { applied } = await this.client.push(peer.addrs, document, { signal })
      state.applied = applied
      state.error = undefined
      this.log.info('agent applied its central config', { peer: peer.peerId, version: applied })
    } catch (err) {
      // the agent's own words for a refusal, without the wire's wrapping
      state.error = describeError(err).replace(/^REMOTE_ERROR: remote: /, '')
      this.log.warn('agent did not apply its central config', { peer: peer.peerId, version: document.version, err: state.error })
    }
  }

  state (peerId: string, name: string): AgentConfigState {
    const s = this.states.get(peerId)
    const out: AgentConfigState = { peerId, name, wanted: this.store.effective(peerId, name).version }
    if (s?.applied !== undefined) out.applied = s.applied
    if (s?.error !== undefined) out.error = s.error
    return out
  }
}

/** A value for a log or audit line: JSON, cut short. */
export function shortValue (v: unknown): string {
  if (v === undefined) return '(unset)'
  const text = JSON.stringify(v)
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}
