/**
 * A host listens on the port it had last time where its config leaves the port to the system
 * (tcp/0): after a restart (or a bare node becoming an agent) the manager's known address is
 * still right, so nothing waits on rediscovery. The port is kept in `<dataDir>/listen-port`.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHoldfastNode, listenPort, type HoldfastNode, type NodeOptions } from './libp2p-node.js'
import { describeError, errorCode } from '../util/errors.js'
import type { Logger } from '../util/log.js'

/** Starts the node on its saved port, or as configured when that port is taken; saves the port it got. */
export async function createNodeOnSavedPort (options: NodeOptions, dataDir: string, log: Logger): Promise<HoldfastNode> {
  const portFile = join(dataDir, 'listen-port')
  let saved: number | undefined
  try {
    const n = Number(readFileSync(portFile, 'utf8').trim())
    if (Number.isInteger(n) && n > 0 && n <= 65535) saved = n
  } catch {}
  const preferred = saved === undefined ? options.listen : options.listen.map(a => a.replace(/\/tcp\/0(?=\/|$)/, `/tcp/${saved}`))
  let node: HoldfastNode
  if (preferred.some((a, i) => a !== options.listen[i])) {
    try {
      node = await createHoldfastNode({ ...options, listen: preferred })
    } catch (err) {
      // libp2p's message embeds the listen error's stack; its name says enough here
      log.info('last listen port is taken; listening on a new one', { port: saved, err: errorCode(err) })
      node = await createHoldfastNode(options)
    }
  } else {
    node = await createHoldfastNode(options)
  }
  try {
    writeFileSync(portFile, `${listenPort(node)}\n`, { mode: 0o600 })
  } catch (err) {
    log.warn('cannot save the listen port; a restart will listen on a new one', { err: describeError(err) })
  }
  return node
}
