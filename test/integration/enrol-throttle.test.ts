/**
 * Enrolment abuse against a real manager (in this process, on a manual clock) and real joiner
 * nodes over loopback: a flood of wrong secrets, from one peer id and from many, is refused
 * quickly by the rate limit after the first few checks (or earlier still by libp2p's own limit of
 * 5 inbound connections a second from one host), the refusals are audited as counts
 * (not a line each), the flood uses up no token, and a host with a valid token joins once the
 * per-IP interval has passed on the injected clock.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { adminCall } from '../../src/admin/admin-socket.js'
import type { TokenCreated } from '../../src/admin/api.js'
import { resolveConfig } from '../../src/config/config.js'
import { decodeJoinToken, newFleetKey, type JoinToken } from '../../src/node/fleet.js'
import { enrolWithManager } from '../../src/cli/enrol-client.js'
import { Manager } from '../../src/roles/manager/manager.js'
import { AuditLog, type AuditEntry } from '../../src/roles/manager/audit-log.js'
import { ENROL_THROTTLE } from '../../src/roles/manager/enrol-throttle.js'
import { ManualClock } from '../../src/util/clock.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'

/**
 * How an enrolment attempt ends: 'ok', the manager's error code, or 'reset' when libp2p's
 * connection manager dropped the connection before any protocol ran (it takes at most 5
 * inbound connections a second from one host: a limit in real time, under ours).
 */
async function attempt (key: PrivateKey, token: JoinToken): Promise<string> {
  try {
    await enrolWithManager(key, token, 'flood', AbortSignal.timeout(20_000))
    return 'ok'
  } catch (err) {
    if (err instanceof HoldfastError && err.code === 'REMOTE_ERROR') return String(err.details.remoteCode)
    if (/ECONNRESET|ECONNREFUSED|EPIPE/.test(String(err))) return 'reset'
    return err instanceof HoldfastError ? err.code : `untyped: ${String(err)}`
  }
}

/** An attempt that gets an answer from the enrol protocol: retried (at most 30 times, 100 ms apart) while libp2p's real-time limit drops it. */
async function answered (key: PrivateKey, token: JoinToken): Promise<string> {
  for (let i = 0; i < 30; i++) {
    const code = await attempt(key, token)
    if (code !== 'reset') return code
    // libp2p's threshold is per real second; no clock of ours moves it
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return 'reset'
}

describe('integration: enrolment rate limit', function () {
  this.timeout(120_000)
  let root = ''
  let manager: Manager | undefined

  afterEach(async () => {
    await manager?.stop()
    manager = undefined
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  it('a flood of wrong secrets is refused quickly and audited as counts; a valid join succeeds after the per-IP interval', async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-enrol-throttle-'))
    const config = resolveConfig({ role: 'manager', dataDir: join(root, 'manager'), fleetKey: newFleetKey(), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: { enabled: false } }, root)
    const clock = new ManualClock(1_000_000)
    manager = new Manager(config, clock, silentLogger)
    await manager.start()
    const real = decodeJoinToken((await adminCall(config.adminSocket, 'token-create', { uses: 1 }) as TokenCreated).token)
    const wrong: JoinToken = { ...real, secret: 'ab'.repeat(32) }

    // one peer id guessing again and again, then many fresh ids (all from 127.0.0.1)
    const one = await generateKeyPair('Ed25519')
    const codes: string[] = []
    const started = performance.now()
    for (let i = 0; i < 10; i++) codes.push(await attempt(one, wrong))
    // each fresh id gets an answer (libp2p's per-second limit would otherwise drop most)
    for (let i = 0; i < 30; i++) codes.push(await answered(await generateKeyPair('Ed25519'), wrong))
    const floodMs = performance.now() - started

    const checked = codes.filter(c => c === 'ENROL_REFUSED').length
    const limited = codes.filter(c => c === 'ENROL_RATE_LIMITED').length
    const reset = codes.filter(c => c === 'reset').length
    assert.equal(checked + limited + reset, codes.length, codes.join(' '))
    assert.ok(limited >= 3, codes.join(' '))
    // one wrong secret empties the single id's own bucket (burst = failureCost); the fresh ids
    // share what is left of the per-IP bucket, a failure's worth each
    const { perPeer, perIp, failureCost } = ENROL_THROTTLE
    assert.equal(perPeer.burst, failureCost)
    assert.equal(perIp.burst % failureCost, 0)
    const fresh = (perIp.burst - failureCost) / failureCost
    assert.equal(checked, 1 + fresh, codes.join(' '))
    assert.equal(codes.slice(10).filter(c => c === 'ENROL_RATE_LIMITED').length, 30 - fresh, codes.join(' '))
    // refused before any secret is checked: each is one handshake and one frame
    assert.ok(floodMs < 60 * 1000, `the flood took ${Math.round(floodMs)} ms`)

    // the holder of the real token, right after the flood and from the same address: refused
    // for now (nothing of its token used), admitted once the per-IP interval has passed
    const joiner = await generateKeyPair('Ed25519')
    assert.equal(await answered(joiner, real), 'ENROL_RATE_LIMITED')
    await clock.advance(ENROL_THROTTLE.perIp.refillMs)
    assert.equal(await answered(joiner, real), 'ok')

    await manager.stop()
    manager = undefined
    const entries: AuditEntry[] = new AuditLog(join(config.dataDir, 'audit.log')).read()
    const joins = entries.filter(e => e.command === 'join')
    assert.equal(joins.filter(e => e.detail === 'ENROL_REFUSED' || e.detail?.startsWith('ENROL_REFUSED') === true).length, checked, JSON.stringify(joins))
    const counted = joins.filter(e => e.detail === 'ENROL_RATE_LIMITED')
    // the first refusal at once, the rest in one line when the manager stops (the clock did not reach the report interval)
    assert.ok(counted.length >= 1 && counted.length <= 3, JSON.stringify(counted))
    const sum = counted.reduce((a, e) => a + Number(/^(\d+) attempt/.exec(e.target)?.[1] ?? NaN), 0)
    assert.equal(sum, limited + 1, 'every refused attempt is counted (the flood and the joiner\'s first try)')
    assert.equal(joins.filter(e => e.outcome === 'ok').length, 1)
  })
})
