/**
 * `npm run demo`: one manager and two agents as separate processes inside a private network
 * namespace; they find each other over real mDNS, the manager backs both up, prints the peer
 * list, restores each endpoint into a fresh directory and compares it byte for byte with the
 * source. Exits 0 only when both restores are identical. Cleans up everything it started.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { reexecInPrivateNetns, canUnshare, inPrivateNetns } from '../test/support/netns.js'
import { TestFleet, runCli, cliJson } from '../test/support/fleet.js'
import { compareTrees, makeSampleTree } from '../test/support/trees.js'

function say (line: string): void { process.stdout.write(line + '\n') }

async function demo (): Promise<number> {
  const started = Date.now()
  const root = mkdtempSync(join(tmpdir(), 'holdfast-demo-'))
  const fleet = new TestFleet(root)
  let ok = false
  try {
    say(`== Holdfast demo in ${root} (private network namespace: multicast stays on its loopback)`)
    const srcA = join(root, 'alice-files')
    const srcB = join(root, 'bob-files')
    makeSampleTree(srcA, 'alice')
    makeSampleTree(srcB, 'bob')
    await fleet.init({ bandwidth: 50 * 1024 * 1024 })
    say(`== fleet created; manager ${fleet.managerPeerId}`)
    await fleet.startManager()
    say('== manager running; each endpoint joins with a token from `holdfast token create`')
    // with the manager running, addAgent is the real flow: token create, then join (enrolment)
    const alice = await fleet.addAgent('alice-laptop', srcA)
    const bob = await fleet.addAgent('bob-desktop', srcB)
    await fleet.startAgent(alice)
    await fleet.startAgent(bob)
    say('== manager and two agents running; agents staging their folders')
    for (const a of [alice, bob]) await cliJson(['scan-now', '--socket', a.socket])
    say('== manager: backup-now (waits for mDNS to find both agents)')
    const backup = await runCli(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '2', '--timeout', '30'])
    process.stdout.write(backup.stdout)
    if (backup.code !== 0) { say(backup.stderr); return 1 }
    say('\n== holdfast peers')
    process.stdout.write((await runCli(['peers', '--socket', fleet.managerSocket])).stdout)
    say('\n== holdfast snapshots')
    process.stdout.write((await runCli(['snapshots', '--socket', fleet.managerSocket])).stdout)
    let differences = 0
    for (const [agent, src, folder] of [[alice, srcA, 'alice-files'], [bob, srcB, 'bob-files']] as const) {
      const target = join(root, `restore-${agent.name}`)
      say(`\n== holdfast restore --endpoint ${agent.name} --target ${target}`)
      const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', agent.name, '--target', target])
      process.stdout.write(r.stdout)
      if (r.code !== 0) { say(r.stderr); differences++; continue }
      const diffs = compareTrees(src, join(target, folder))
      for (const d of diffs) say(`   DIFFERENT: ${d.path}: ${d.what}`)
      say(diffs.length === 0 ? `   verified: restore of ${agent.name} is identical to its source (bytes, modes, mtimes, links, names)` : `   ${diffs.length} differences`)
      differences += diffs.length
    }
    ok = differences === 0
    say(`\n== demo ${ok ? 'PASSED' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    return ok ? 0 : 1
  } catch (err) {
    say(`demo failed: ${err instanceof Error ? err.message : String(err)}`)
    for (const key of ['manager', 'agent-alice-laptop', 'agent-bob-desktop']) say(`--- ${key} log:\n${fleet.log(key)}`)
    return 1
  } finally {
    await fleet.stopAll()
    rmSync(root, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!inPrivateNetns()) {
    if (!canUnshare()) {
      say('demo: cannot create a private network namespace (unshare -rn); refusing to send mDNS on the real network')
      process.exit(1)
    }
    process.exit(reexecInPrivateNetns([process.execPath, fileURLToPath(import.meta.url)]) ?? 1)
  }
  process.exitCode = await demo()
}
