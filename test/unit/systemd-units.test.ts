/**
 * The systemd units in packaging/systemd: `systemd-analyze verify` accepts them without a
 * warning, and they keep the sandboxing a backup daemon needs (a unit that verifies but has lost
 * ProtectSystem= would still pass verify).
 *
 * systemd-analyze verify prints a bad value or an unknown key as a warning and still exits 0,
 * so the check is "exit 0 and nothing said about our files". It runs without a running systemd
 * (it loads the unit files offline), so it works inside the test's network namespace too. It
 * does insist that ExecStart's binary exists: where /usr/bin/node does not, the units are
 * verified with ExecStart pointing at this Node, and the test says so.
 */
import { strict as assert } from 'node:assert'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const DIR = fileURLToPath(new URL('../../../packaging/systemd/', import.meta.url))
const UNITS = ['holdfast-manager.service', 'holdfast-node.service']
const ANALYZE = '/usr/bin/systemd-analyze'

/** key → values of a unit file's [Service] section. */
function serviceSection (text: string): Map<string, string> {
  const out = new Map<string, string>()
  let section = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const m = /^\[(.+)\]$/.exec(line)
    if (m !== null) { section = m[1] as string; continue }
    const eq = line.indexOf('=')
    if (section === 'Service' && eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1))
  }
  return out
}

/** Copies the units to a temp dir (ExecStart's Node swapped for ours if /usr/bin/node is missing), runs verify. */
function verify (mutate: (text: string) => string = t => t): { status: number | null, output: string, dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-units-'))
  for (const unit of UNITS) {
    let text = mutate(readFileSync(join(DIR, unit), 'utf8'))
    if (!existsSync('/usr/bin/node')) text = text.replaceAll('/usr/bin/node ', `${process.execPath} `)
    writeFileSync(join(dir, unit), text)
  }
  const run = spawnSync(ANALYZE, ['verify', ...UNITS.map(u => join(dir, u))], { encoding: 'utf8', timeout: 60_000 })
  return { status: run.status, output: `${run.stdout}${run.stderr}`, dir }
}

const BIN = fileURLToPath(new URL('../../../bin/holdfast.js', import.meta.url))

describe('systemd units (packaging/systemd)', () => {
  it('keep the sandboxing of a backup daemon', () => {
    const node = serviceSection(readFileSync(join(DIR, 'holdfast-node.service'), 'utf8'))
    const manager = serviceSection(readFileSync(join(DIR, 'holdfast-manager.service'), 'utf8'))
    for (const unit of [node, manager]) {
      assert.equal(unit.get('ProtectSystem'), 'strict')
      assert.equal(unit.get('NoNewPrivileges'), 'yes')
      assert.equal(unit.get('PrivateTmp'), 'yes')
      assert.equal(unit.get('RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6 AF_NETLINK')
      assert.ok(unit.get('StateDirectory')?.split(' ').includes('holdfast'))
      assert.match(unit.get('ExecStart') ?? '', /^\/usr\/bin\/node \/opt\/holdfast\/current\/bin\/holdfast\.js /)
    }
    // the node reads every user's protected folders, read-only, and writes only its own places
    assert.equal(node.get('ProtectHome'), 'read-only')
    assert.equal(node.get('CapabilityBoundingSet'), 'CAP_DAC_READ_SEARCH')
    assert.equal(node.get('ReadWritePaths'), '/opt/holdfast')
    assert.equal(node.get('RestartForceExitStatus'), '75')
    // the manager reads nothing of the host's
    assert.equal(manager.get('ProtectHome'), 'yes')
    assert.equal(manager.get('CapabilityBoundingSet'), '')
    assert.equal(manager.get('DynamicUser'), 'yes')
  })

  it('start the daemons with options the CLI takes, the node under the supervisor with the writable install root', () => {
    const node = serviceSection(readFileSync(join(DIR, 'holdfast-node.service'), 'utf8'))
    const nodeArgs = (node.get('ExecStart') ?? '').split(' ').slice(2)
    assert.equal(nodeArgs[0], 'node')
    const root = nodeArgs[nodeArgs.indexOf('--install-root') + 1]
    assert.ok(nodeArgs.includes('--install-root'), 'the node runs under the upgrade supervisor')
    assert.equal(root, node.get('ReadWritePaths'), 'the supervisor switches versions where the unit may write')
    for (const unit of ['holdfast-node.service', 'holdfast-manager.service']) {
      const args = (serviceSection(readFileSync(join(DIR, unit), 'utf8')).get('ExecStart') ?? '').split(' ').slice(2)
      // this checkout's CLI with the unit's arguments: the config under /var/lib is absent
      // here, so it must get as far as reading it, past the option parser
      const run = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, HOLDFAST_HEALTH_FILE: '' } })
      assert.doesNotMatch(run.stderr, /Unknown option|Unexpected argument/i, `${unit}: ${run.stderr}`)
      assert.match(run.stderr, /\/var\/lib\/holdfast\/(node\/node|manager\/manager)\.json/, `${unit}: ${run.stderr}`)
      assert.notEqual(run.status, 0)
    }
  })

  it('pass systemd-analyze verify without a warning', function () {
    if (!existsSync(ANALYZE)) {
      // Reason: no systemd on this machine; the static checks above still ran.
      this.skip()
    }
    if (!existsSync('/usr/bin/node')) process.stderr.write(`      (no /usr/bin/node here: verified with ExecStart's Node replaced by ${process.execPath})\n`)
    const good = verify()
    try {
      assert.equal(good.status, 0, good.output)
      const aboutOurs = good.output.split('\n').filter(l => l.includes(good.dir) || UNITS.some(u => l.includes(u)))
      assert.deepEqual(aboutOurs, [], good.output)
    } finally { rmSync(good.dir, { recursive: true, force: true }) }
    // and the check can fail: a misspelt value is only a warning to verify, which we count
    const bad = verify(t => t.replace('ProtectSystem=strict', 'ProtectSystem=stric'))
    try {
      assert.ok(bad.output.split('\n').some(l => l.includes('ProtectSystem') || l.includes('protect system')), bad.output)
    } finally { rmSync(bad.dir, { recursive: true, force: true }) }
  })
})
