/**
 * A node's persistent Ed25519 identity: created once, stored with mode 0600, reused on every
 * start so the peer id never changes.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { HoldfastError } from '../util/errors.js'
import { writeFileDurable } from '../util/durable-file.js'

export const IDENTITY_FILE = 'identity.key'

export interface Identity {
  privateKey: PrivateKey
  peerId: string
}

export async function loadOrCreateIdentity (dataDir: string): Promise<Identity> {
  const file = join(dataDir, IDENTITY_FILE)
  let bytes: Buffer | undefined
  try {
    bytes = readFileSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) {
    // A key others could read is no longer a secret: refused, not tightened, so the admin
    // learns it was exposed (and can decide to give the host a new identity).
    const mode = statSync(file).mode & 0o777
    if ((mode & 0o077) !== 0) {
      throw new HoldfastError('CONFIG_INVALID', `identity file ${file} is readable or writable by others (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${file}`, { mode })
    }
    let privateKey: PrivateKey
    try {
      privateKey = privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new HoldfastError('CONFIG_INVALID', `identity file ${file} is damaged`, {}, { cause: err })
    }
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString() }
  }
  const privateKey = await generateKeyPair('Ed25519')
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  // Durable before anyone learns the peer id (init prints it into the join token): a power
  // cut must not leave the host with no key, or a new one its fleet does not know.
  writeFileDurable(file, privateKeyToProtobuf(privateKey), 0o600)
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString() }
}
