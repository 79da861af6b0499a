/**
 * Who belongs to the fleet, as the manager decides it: join tokens (only the SHA-256 of each
 * secret, with its expiry and uses left) and each enrolled host's state. A host holding the
 * fleet key is not a member by that alone: an id the manager never approved is `pending` and
 * never pulled; a `revoked` id is refused by the connection gater for good.
 *
 * Kept in one small JSON file in the data directory (`membership.json`, mode 0600), rewritten
 * durably on every change: changes are rare (an admin command, an enrolment), and a power cut
 * must not bring a revoked host back.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { hashEnrolSecret, newEnrolSecret } from '../../node/fleet.js'
import { writeFileDurable } from '../../util/durable-file.js'
import { HoldfastError } from '../../util/errors.js'

export const MEMBERSHIP_FILE = 'membership.json'
/** A token's secret never leaves; its id (a prefix of the hash) names it in list and revoke. */
const TOKEN_ID_CHARS = 12
/** Expired and used-up tokens kept for `token list` before they are dropped from the file. */
const MAX_TOKENS = 1000

export type MemberState = 'approved' | 'pending' | 'revoked'

export interface TokenRecord {
  id: string
  hash: string
  createdAt: number
  expiresAt: number
  usesLeft: number
}

export interface TokenRow {
  id: string
  createdAt: number
  expiresAt: number
  usesLeft: number
  state: 'live' | 'expired' | 'used up'
}

export interface MemberRecord {
  state: MemberState
  /** When it took this state. */
  at: number
  /** 'token <id>', 'admin'. */
  via: string
  name?: string
}

interface FileShape {
  tokens: TokenRecord[]
  peers: Record<string, MemberRecord>
}

export class Membership {
  private readonly file: string
  private data: FileShape

  constructor (dataDir: string) {
    this.file = join(dataDir, MEMBERSHIP_FILE)
    this.data = load(this.file)
  }

  /** A host the manager never recorded is pending: holding the fleet key is not membership. */
  stateOf (peerId: string): MemberState {
    return Object.hasOwn(this.data.peers, peerId) ? this.data.peers[peerId].state : 'pending'
  }

  isRevoked (peerId: string): boolean { return this.stateOf(peerId) === 'revoked' }

  members (): Array<{ peerId: string } & MemberRecord> {
    return Object.entries(this.data.peers).map(([peerId, r]) => ({ peerId, ...r }))
  }

  createToken (options: { expiresInMs: number, uses: number }, now: number): { secret: string, row: TokenRow } {
    const secret = newEnrolSecret()
    const hash = hashEnrolSecret(secret)
    const record: TokenRecord = { id: hash.slice(0, TOKEN_ID_CHARS), hash, createdAt: now, expiresAt: now + options.expiresInMs, usesLeft: options.uses }
    // the oldest dead tokens go first when the list is full; live ones are never dropped
    const tokens = [...this.data.tokens, record]
    while (tokens.length > MAX_TOKENS) {
      const dead = tokens.findIndex(t => t.expiresAt <= now || t.usesLeft <= 0)
      if (dead < 0) break
      tokens.splice(dead, 1)
    }
    this.save({ ...this.data, tokens })
    return { secret, row: tokenRow(record, now) }
  }

  tokens (now: number): TokenRow[] { return this.data.tokens.map(t => tokenRow(t, now)) }

  /** Ends a token now (its id, or a prefix of at least 6 characters naming one token). */
  revokeToken (id: string, now: number): TokenRow {
    const matches = id.length >= 6 ? this.data.tokens.filter(t => t.id.startsWith(id)) : []
    if (matches.length !== 1) throw new HoldfastError('TOKEN_UNKNOWN', matches.length === 0 ? `no token '${id}'` : `'${id}' names ${matches.length} tokens; give more of the id`)
    const tokens = this.data.tokens.map(t => t === matches[0] ? { ...t, usesLeft: 0, expiresAt: Math.min(t.expiresAt, now) } : t)
    this.save({ ...this.data, tokens })
    return tokenRow(tokens.find(t => t.id === matches[0].id) as TokenRecord, now)
  }

  /**
   * Spends one use of the token whose secret this is and records the peer. Refusals say the
   * same thing whatever the cause, so a joiner learns nothing about which tokens exist.
   */
  redeem (secret: string, peerId: string, name: string, autoApprove: boolean, now: number): MemberState {
    const refused = new HoldfastError('ENROL_REFUSED', 'the join token is not valid (unknown, expired or used up); ask for a new one')
    if (!/^[0-9a-f]{64}$/.test(secret)) throw refused
    const hash = hashEnrolSecret(secret)
    const token = this.data.tokens.find(t => t.hash === hash)
    if (token === undefined || token.expiresAt <= now || token.usesLeft <= 0) throw refused
    // revoked is for good: a fresh token does not bring the same host back
    if (this.isRevoked(peerId)) throw refused
    const current = Object.hasOwn(this.data.peers, peerId) ? this.data.peers[peerId] : undefined
    const state: MemberState = current?.state === 'approved' || autoApprove ? 'approved' : 'pending'
    const tokens = this.data.tokens.map(t => t === token ? { ...t, usesLeft: t.usesLeft - 1 } : t)
    const peers = { ...this.data.peers, [peerId]: { state, at: now, via: `token ${token.id}`, ...(name === '' ? {} : { name }) } }
    this.save({ tokens, peers })
    return state
  }

  /** Admits a pending (or never seen) host. A revoked one stays revoked: revocation is for good. */
  approve (peerId: string, now: number): MemberRecord {
    if (this.isRevoked(peerId)) throw new HoldfastError('ADMIN_BAD_REQUEST', `peer ${peerId} is revoked; revocation is for good (it must get a new identity and join again)`)
    const record: MemberRecord = { ...(Object.hasOwn(this.data.peers, peerId) ? this.data.peers[peerId] : {}), state: 'approved', at: now, via: 'admin' }
    this.save({ ...this.data, peers: { ...this.data.peers, [peerId]: record } })
    return record
  }

  revoke (peerId: string, now: number): MemberRecord {
    const record: MemberRecord = { ...(Object.hasOwn(this.data.peers, peerId) ? this.data.peers[peerId] : {}), state: 'revoked', at: now, via: 'admin' }
    this.save({ ...this.data, peers: { ...this.data.peers, [peerId]: record } })
    return record
  }

  /** Written first, then taken as the state: a failed write changes nothing. */
  private save (next: FileShape): void {
    try {
      writeFileDurable(this.file, JSON.stringify(next, null, 1) + '\n', 0o600)
    } catch (err) {
      throw new HoldfastError('MEMBERSHIP_FAILED', `cannot write ${this.file}: ${(err as Error).message}`, {}, { cause: err })
    }
    this.data = next
  }
}

function tokenRow (t: TokenRecord, now: number): TokenRow {
  return { id: t.id, createdAt: t.createdAt, expiresAt: t.expiresAt, usesLeft: t.usesLeft, state: t.usesLeft <= 0 ? 'used up' : t.expiresAt <= now ? 'expired' : 'live' }
}

function load (file: string): FileShape {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { tokens: [], peers: {} }
    throw new HoldfastError('MEMBERSHIP_FAILED', `cannot read ${file}: ${(err as Error).message}`, {}, { cause: err })
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new HoldfastError('MEMBERSHIP_FAILED', `${file} is damaged (not JSON); refusing to start rather than forget revocations`, {}, { cause: err })
  }
  const r = value as Partial<FileShape> | null
  if (typeof r !== 'object' || r === null || !Array.isArray(r.tokens) || typeof r.peers !== 'object' || r.peers === null) {
    throw new HoldfastError('MEMBERSHIP_FAILED', `${file} is damaged; refusing to start rather than forget revocations`)
  }
  for (const p of Object.values(r.peers)) {
    if (!['approved', 'pending', 'revoked'].includes((p as Partial<MemberRecord>)?.state ?? '')) throw new HoldfastError('MEMBERSHIP_FAILED', `${file} is damaged (a peer's state)`)
  }
  return { tokens: r.tokens, peers: Object.assign(Object.create(null) as Record<string, MemberRecord>, r.peers) }
}
