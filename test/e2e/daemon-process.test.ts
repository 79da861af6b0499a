/**
 * How a daemon process runs: the process the harness (or systemd, or the supervisor) started
 * is the daemon itself (same pid), under a young-generation bound, with one isolate; an idle
 * agent fits the endpoint's memory budget; SIGTERM stops it cleanly with status 0. Real
 * processes through the real CLI; mDNS off and loopback only, so no namespace is needed.
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, runCli, type AgentHandle } from '../support/fleet.js'

/** issue 12's budget for the agent's peak RSS; an agent with nothing to back up must fit it. */
const AGENT_BUDGET_MIB = 128

function statusKiB (pid: number, field: string): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find(l => l.startsWith(`${field}:`))
  assert.ok(line !== undefined, `${field} in /proc/${pid}/status`)
  return Number(line.split(/\s+/)[1])
}

describe('e2e: the daemon process', function () {
  this.timeout(120_000)
  let root: string
  let fleet: TestFleet
  let agent: AgentHandle

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-e2e-daemon-'))
    fleet = new TestFleet(root)
    await fleet.init({ mdns: false })
    const folder = join(root, 'empty')
    mkdirSync(folder)
    agent = await fleet.addAgent('a', folder, { mdns: false, settle: 0 })
  })
  after(async () => {
    await fleet?.stopAll()
    rmSync(root, { recursive: true, force: true })
  })

  it(`an agent with an empty folder is the process that was started, one JS thread, peak RSS ≤ ${AGENT_BUDGET_MIB} MiB; SIGTERM ends it with 0`, async () => {
    await fleet.startAgent(agent)
    const child = fleet.process(`agent-${agent.name}`)
    const pid = child?.pid
    assert.ok(child !== undefined && pid !== undefined)
    // a whole round (scan, nothing to stage) and a status call: the daemon's start is behind it
    const scan = await runCli(['scan-now', '--socket', agent.socket, '--json'], { timeoutMs: 60_000 })
    assert.equal(scan.code, 0, scan.stderr)
    const peakMiB = statusKiB(pid, 'VmHWM') / 1024
    assert.ok(peakMiB <= AGENT_BUDGET_MIB, `idle agent peaked at ${peakMiB.toFixed(1)} MiB`)
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    assert.ok(cmdline.some(a => a.startsWith('--max-semi-space-size=')), `the daemon runs under a young-generation bound: ${cmdline.join(' ')}`)
    const threads = readdirSync(`/proc/${pid}/task`).map(t => readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim())
    // a worker thread's isolate shows as 'WorkerThread'; staging workers are gone between rounds
    assert.deepEqual(threads.filter(t => t === 'WorkerThread'), [], `threads: ${threads.join(', ')}`)
    const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
    child.kill('SIGTERM')
    assert.equal(await exited, 0, fleet.log(`agent-${agent.name}`))
  })
})
