/**
 * Peers an admin added by hand at runtime (`holdfast peers add <multiaddr>`), kept in
 * `<dataDir>/static-peers.json` so they survive a restart. They join manager.json's
 * `staticPeers` at start; the config file's own entries are the admin's to edit there (a
 * runtime `peers remove` cannot take them out of a file it does not own).
 */
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { HoldfastError } from '../../util/errors.js'
import { writeFileDurable } from '../../util/durable-file.js'

export const STATIC_PEERS_FILE = 'static-peers.json'
/** A fleet is thousands of endpoints, not millions: a file past this was not written by us. */
const MAX_FILE_BYTES = 4 * 1024 * 1024
const MAX_PEERS = 20_000

/** A dialable static peer: the multiaddr as given, and the peer id it ends with. */
export interface StaticPeer { address: string, peerId: string }

/** Checks a multiaddr an admin typed: it must parse and name its peer (/p2p/<id>). */
export function parseStaticPeer (text: string): StaticPeer {
  let peerId: string | undefined
  try {
    peerId = multiaddr(text.trim()).getComponents().find(c => c.name === 'p2p')?.value
  } catch (err) {
    throw new HoldfastError('ADMIN_BAD_REQUEST', `'${text}' is not a valid multiaddr: ${(err as Error).message}`)
  }
  if (peerId === undefined) throw new HoldfastError('ADMIN_BAD_REQUEST', `'${text}' names no peer: give /ip4/<addr>/tcp/<port>/p2p/<peer id>`)
  return { address: text.trim(), peerId }
}

export class StaticPeerFile {
  private peers: StaticPeer[]
  readonly file: string

  constructor (dataDir: string) {
    this.file = join(dataDir, STATIC_PEERS_FILE)
    this.peers = load(this.file)
  }

  list (): StaticPeer[] { return [...this.peers] }

  /** Adds (and persists) a peer; false when that exact address is listed already. */
  add (peer: StaticPeer): boolean {
    if (this.peers.some(p => p.address === peer.address)) return false
    if (this.peers.length >= MAX_PEERS) throw new HoldfastError('ADMIN_BAD_REQUEST', `at most ${MAX_PEERS} peers can be added by hand`)
    this.save([...this.peers, peer])
    return true
  }

  /** Removes (and persists) every entry for a peer id or that exact multiaddr; returns them. */
  remove (target: string): StaticPeer[] {
    const gone = this.peers.filter(p => p.peerId === target || p.address === target)
    if (gone.length > 0) this.save(this.peers.filter(p => !gone.includes(p)))
    return gone
  }

  private save (peers: StaticPeer[]): void {
    // written before the change is made live: a peer the admin was told is added survives a crash
    writeFileDurable(this.file, JSON.stringify({ version: 1, peers: peers.map(p => p.address) }, null, 2) + '\n', 0o600)
    this.peers = peers
  }
}

function load (file: string): StaticPeer[] {
  let text: string
  try {
    if (statSync(file).size > MAX_FILE_BYTES) throw new HoldfastError('CONFIG_INVALID', `${file} is larger than ${MAX_FILE_BYTES} bytes`)
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch (err) { throw new HoldfastError('CONFIG_INVALID', `${file} is not valid JSON: ${(err as Error).message}`) }
  const peers = (parsed as { peers?: unknown } | null)?.peers
  if (!Array.isArray(peers) || !peers.every(p => typeof p === 'string') || peers.length > MAX_PEERS) throw new HoldfastError('CONFIG_INVALID', `${file} must be { "peers": [<multiaddr>, …] }`)
  return peers.map(p => {
    try { return parseStaticPeer(p) } catch (err) { throw new HoldfastError('CONFIG_INVALID', `${file}: ${(err as Error).message}`) }
  })
}
