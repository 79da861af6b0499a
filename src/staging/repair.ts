/**
 * Sealed sets that lost a chunk from the spool can never be pulled whole. Rather than leave
 * them to fail for ever, each is dropped and its paths are staged again from the source by the
 * next scan (and reported per path until they are).
 */
import type { Logger } from '../util/log.js'
import type { AgentStateDb } from './state-db.js'
import type { Spool } from './spool.js'

export interface RepairResult {
  sets: number[]
  paths: number
}

export function restageBrokenSets (state: AgentStateDb, spool: Spool, log: Logger, now: number): RepairResult {
  const broken = state.setsMissingChunks(spool.segmentsPresent())
  let paths = 0
  for (const setId of broken) {
    const r = state.restageSet(setId, 'chunk missing', now)
    spool.remove(r.segments)
    paths += r.paths
    log.warn('staged set lost a chunk from the spool; its paths are staged again from the source', { set: setId, paths: r.paths })
  }
  return { sets: broken, paths }
}
