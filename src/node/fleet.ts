/**
 * The fleet: one pre-shared key gates every connection; a join token lets a new host enrol
 * with the manager, which then hands it the key. The key is never used directly on the wire: the Noise
 * prologue and the mDNS fleet tag are derived from it with HKDF and distinct labels.
 */
import { createHash, hkdfSync, randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
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

/**
 * A join token: a one-time enrolment secret (32 random bytes; the manager keeps only its
 * SHA-256), the manager's peer id (pinned: the joiner dials it by id, so Noise proves it is
 * talking to that manager before the secret leaves) and the addresses of its enrolment
 * listener. Never the fleet key: the manager hands that over only after it checked the secret
 * (protocols/enrol.ts).
 */
export interface JoinToken {
  secret: string
  managerPeerId: string
  /** Multiaddrs of the manager's enrolment listener, without /p2p. */
  addrs: string[]
}

const TOKEN_PREFIX = 'hfj2.'
/** More addresses than a host has interfaces for is not a token. */
export const MAX_TOKEN_ADDRS = 8
const MAX_ADDR_CHARS = 100

export function newEnrolSecret (): string {
  return randomBytes(32).toString('hex')
}

/** What the manager stores of a token's secret. */
export function hashEnrolSecret (secret: string): string {
  return createHash('sha256').update(Buffer.from(secret, 'hex')).digest('hex')
}

/**
 * The enrolment listener's Noise prologue: public, because one listener serves every live
 * token and Noise takes one prologue. The secret is what admits a joiner (docs/security.md).
 */
export const ENROL_PROLOGUE = new TextEncoder().encode('holdfast/enrol-prologue/v1')

export function encodeJoinToken (token: JoinToken): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify({ s: token.secret, m: token.managerPeerId, a: token.addrs.slice(0, MAX_TOKEN_ADDRS) })).toString('base64url')
}

/** A token is 300-800 characters with a few addresses; the bound is checked before anything is decoded. */
export const MAX_JOIN_TOKEN_CHARS = 2048

export function decodeJoinToken (text: string): JoinToken {
  if (text.length > MAX_JOIN_TOKEN_CHARS) throw new HoldfastError('CONFIG_INVALID', `join token is longer than ${MAX_JOIN_TOKEN_CHARS} characters`)
  if (text.startsWith('hfj1.')) throw new HoldfastError('CONFIG_INVALID', 'this is an old join token that carries the fleet key; make a new one with `holdfast token create` on the manager')
  if (!text.startsWith(TOKEN_PREFIX)) throw new HoldfastError('CONFIG_INVALID', `not a Holdfast join token (it should start with ${TOKEN_PREFIX})`)
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(text.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw new HoldfastError('CONFIG_INVALID', 'join token is damaged')
  }
  const r = value as Record<string, unknown>
  if (typeof r?.s !== 'string' || !/^[0-9a-f]{64}$/.test(r.s) || typeof r.m !== 'string' || !isPeerId(r.m) ||
    !Array.isArray(r.a) || r.a.length === 0 || r.a.length > MAX_TOKEN_ADDRS || !r.a.every(isAddr)) {
    throw new HoldfastError('CONFIG_INVALID', 'join token is damaged')
  }
  return { secret: r.s, managerPeerId: r.m, addrs: r.a as string[] }
}

function isAddr (a: unknown): boolean {
  if (typeof a !== 'string' || a.length > MAX_ADDR_CHARS || !a.startsWith('/') || a.includes('/p2p/')) return false
  try {
    multiaddr(a)
    return true
  } catch {
    return false
  }
}

/** A peer id must be a libp2p peer id in its canonical spelling (it is pinned as text). */
export function isPeerId (text: string): boolean {
  if (text.length > 128) return false
  try {
    return peerIdFromString(text).toString() === text
  } catch {
    return false
  }
}
