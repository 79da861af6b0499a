/**
 * The fleet: one pre-shared key gates every connection, and a join token hands it (with the
 * manager's peer id) to a new host. The key is never used directly on the wire: the Noise
 * prologue and the mDNS fleet tag are derived from it with HKDF and distinct labels.
 */
import { hkdfSync, randomBytes } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { HoldfastError } from '../util/errors.js'

export function newFleetKey (): string {
  return randomBytes(32).toString('hex')
}

function derive (fleetKey: string, label: string, length: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', Buffer.from(fleetKey, 'hex'), Buffer.alloc(0), Buffer.from(label), length))
}

/** Mixed into the Noise handshake: peers without the key fail the handshake. */
export function noisePrologue (fleetKey: string): Uint8Array {
  return derive(fleetKey, 'holdfast/noise-prologue/v1', 32)
}

/** Published in mDNS so a manager ignores other fleets' hosts; reveals nothing of the key. */
export function fleetTag (fleetKey: string): string {
  return Buffer.from(derive(fleetKey, 'holdfast/mdns-fleet-tag/v1', 8)).toString('hex')
}

export interface JoinToken {
  fleetKey: string
  managerPeerId: string
}

const TOKEN_PREFIX = 'hfj1.'

export function encodeJoinToken (token: JoinToken): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify({ k: token.fleetKey, m: token.managerPeerId })).toString('base64url')
}

/** A token is about 150 characters; the bound is checked before anything is decoded. */
export const MAX_JOIN_TOKEN_CHARS = 1024

export function decodeJoinToken (text: string): JoinToken {
  if (text.length > MAX_JOIN_TOKEN_CHARS) throw new HoldfastError('CONFIG_INVALID', `join token is longer than ${MAX_JOIN_TOKEN_CHARS} characters`)
  if (!text.startsWith(TOKEN_PREFIX)) throw new HoldfastError('CONFIG_INVALID', 'not a Holdfast join token (it should start with hfj1.)')
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(text.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw new HoldfastError('CONFIG_INVALID', 'join token is damaged')
  }
  const r = value as Record<string, unknown>
  if (typeof r?.k !== 'string' || !/^[0-9a-f]{64}$/.test(r.k) || typeof r.m !== 'string' || !isPeerId(r.m)) {
    throw new HoldfastError('CONFIG_INVALID', 'join token is damaged')
  }
  return { fleetKey: r.k, managerPeerId: r.m }
}

/** The manager id must be a libp2p peer id in its canonical spelling (it is pinned as text). */
function isPeerId (text: string): boolean {
  if (text.length > 128) return false
  try {
    return peerIdFromString(text).toString() === text
  } catch {
    return false
  }
}
