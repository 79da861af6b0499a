import { strict as assert } from 'node:assert'
import { spawnSync } from 'node:child_process'
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildPackage, currentVersion, installPackage, readUpgradeState, rollback, switchCurrent, verifyManifest, type SignedManifest } from '../../src/deploy/package.js'
import { readTar } from '../../src/deploy/tar-reader.js'
import { writeTar, type TarSource } from '../../src/deploy/tar-writer.js'
import { holdfastCode } from '../unit/helpers.js'
import { BIN, chunked, fakeProject, file, listTree, newManager, signedTarball, type Manager } from '../support/packages.js'

const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const MiB = 1024 * 1024

describe('deploy: signed packages', function () {
  this.timeout(120_000)
  let root: string
  let manager: Manager
  let other: Manager
  let n = 0
  const fresh = (): string => { const d = join(root, `case-${n++}`); mkdirSync(d); return d }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-pkg-'))
    manager = await newManager()
    other = await newManager()
  })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  /** An install root with v1 installed and current, and a v2 package built beside it. */
  async function withV1 (): Promise<{ installRoot: string, v2: { tarball: string, signed: SignedManifest }, was: string[] }> {
    const dir = fresh()
    const installRoot = join(dir, 'opt')
    const out = join(dir, 'out')
    mkdirSync(out)
    const v1 = await buildPackage({ projectDir: fakeProject(dir, '1.0.0', 'healthy-exit'), outDir: out, privateKey: manager.privateKey, signer: manager.peerId })
    await installPackage({ installRoot, source: createReadStream(v1.tarball), signed: v1.signed, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB })
    await switchCurrent(installRoot, '1.0.0')
    const v2 = await buildPackage({ projectDir: fakeProject(dir, '2.0.0', 'healthy-exit'), outDir: out, privateKey: manager.privateKey, signer: manager.peerId })
    return { installRoot, v2, was: snapshot(installRoot) }
  }

  /** What a refusal must leave as it was: the tree of the install root, the link and the state. */
  function snapshot (installRoot: string): string[] {
    return [...listTree(installRoot), `current -> ${readlinkSync(join(installRoot, 'current'))}`, readFileSync(join(installRoot, 'upgrade-state.json'), 'utf8')]
  }

  it('builds, verifies, installs and switches: the installed files are the project\'s bytes', async () => {
    const { installRoot, v2 } = await withV1()
    assert.equal(v2.signed.manifest.size, readFileSync(v2.tarball).byteLength)
    const progress: number[] = []
    const res = await installPackage({ installRoot, source: chunked(readFileSync(v2.tarball), 777), signed: v2.signed, pinnedManagers: [other.peerId, manager.peerId], maxBytes: 10 * MiB, onProgress: p => progress.push(p.bytes) })
    assert.equal(res.version, '2.0.0')
    assert.equal(progress.at(-1), v2.signed.manifest.size)
    const project = join(root, `case-${n - 1}`, 'project-2.0.0')
    for (const rel of ['package.json', 'bin/holdfast.js', `dist/src/deep/er/${'x'.repeat(120)}.js`]) {
      assert.deepEqual(readFileSync(join(res.dir, rel)), readFileSync(join(project, rel)), rel)
    }
    assert.equal(currentVersion(installRoot), '1.0.0', 'installing does not switch')
    assert.deepEqual(await switchCurrent(installRoot, '2.0.0'), { previous: '1.0.0' })
    assert.equal(readlinkSync(join(installRoot, 'current')), 'versions/2.0.0')
    assert.equal(readUpgradeState(installRoot)?.phase, 'switched')
    // installing the same package again is a no-op, not an error
    await installPackage({ installRoot, source: createReadStream(v2.tarball), signed: v2.signed, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB })
    assert.equal(await rollback(installRoot, 'test'), '1.0.0')
    assert.equal(currentVersion(installRoot), '1.0.0')
    const state = readUpgradeState(installRoot)
    assert.equal(state?.phase, 'rolled-back')
    assert.deepEqual(state?.failed, { version: '2.0.0', reason: 'test' })
    assert.equal(await rollback(installRoot), undefined, 'nothing further to roll back to')
  })

  it('refuses a tampered tarball (one byte flipped) and changes nothing', async () => {
    const { installRoot, v2, was } = await withV1()
    const bytes = readFileSync(v2.tarball)
    bytes[Math.floor(bytes.byteLength / 2)] ^= 0x01
    await assert.rejects(installPackage({ installRoot, source: chunked(bytes), signed: v2.signed, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB }), holdfastCode('PACKAGE_HASH_MISMATCH'))
    assert.deepEqual(snapshot(installRoot), was)
  })

  it('refuses a package signed by another key, or a manifest changed after signing, before reading a byte', async () => {
    const { installRoot, v2, was } = await withV1()
    let read = 0
    const counting = async function * (): AsyncGenerator<Uint8Array> { read++; yield readFileSync(v2.tarball) }
    const byOther = await buildPackage({ projectDir: join(root, `case-${n - 1}`, 'project-2.0.0'), outDir: join(root, `case-${n - 1}`), privateKey: other.privateKey, signer: other.peerId, version: '2.0.1' })
    await assert.rejects(installPackage({ installRoot, source: counting(), signed: byOther.signed, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB }), holdfastCode('PACKAGE_SIGNATURE_INVALID'))
    // other key, but claiming to be the pinned manager
    await assert.rejects(installPackage({ installRoot, source: counting(), signed: { ...byOther.signed, signer: manager.peerId }, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB }), holdfastCode('PACKAGE_SIGNATURE_INVALID'))
    // the pinned manager's signature over another manifest (a bigger size)
    const altered: SignedManifest = { ...v2.signed, manifest: { ...v2.signed.manifest, size: v2.signed.manifest.size + 1 } }
    await assert.rejects(installPackage({ installRoot, source: counting(), signed: altered, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB }), holdfastCode('PACKAGE_SIGNATURE_INVALID'))
    assert.equal(read, 0, 'nothing of the package was read')
    assert.deepEqual(snapshot(installRoot), was)
  })

  it('refuses an unsafe version name even under a good signature', async () => {
    const bad = { format: 1, name: 'holdfast', version: '../../etc', sha256: '0'.repeat(64), size: 1, builtAt: new Date(0).toISOString() }
    const signature = Buffer.from(await manager.privateKey.sign(new TextEncoder().encode(JSON.stringify(bad)))).toString('base64')
    await assert.rejects(verifyManifest({ manifest: bad as unknown as SignedManifest['manifest'], signer: manager.peerId, signature }, [manager.peerId]), holdfastCode('PACKAGE_INVALID'))
  })

  it('refuses a truncated package and an oversized one (over the cap, or longer than signed)', async () => {
    const { installRoot, v2, was } = await withV1()
    const bytes = readFileSync(v2.tarball)
    const opts = { installRoot, signed: v2.signed, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB }
    await assert.rejects(installPackage({ ...opts, source: chunked(bytes.subarray(0, bytes.byteLength - 10)) }), holdfastCode('PACKAGE_TRUNCATED'))
    assert.deepEqual(snapshot(installRoot), was)
    let read = 0
    await assert.rejects(installPackage({ ...opts, maxBytes: bytes.byteLength - 1, source: (async function * () { read++; yield bytes })() }), holdfastCode('PACKAGE_TOO_LARGE'))
    assert.equal(read, 0, 'a package over the cap is refused from its manifest')
    assert.deepEqual(snapshot(installRoot), was)
    // longer than signed: cut at the first byte past the size, the rest never read
    let pieces = 0
    const endless = async function * (): AsyncGenerator<Uint8Array> { yield bytes; for (;;) { pieces++; yield Buffer.alloc(64 * 1024) } }
    await assert.rejects(installPackage({ ...opts, source: endless() }), holdfastCode('PACKAGE_TOO_LARGE'))
    assert.equal(pieces, 1)
    assert.deepEqual(snapshot(installRoot), was)
  })

  describe('refuses a tarball whose entries escape, and changes nothing', () => {
    const hostile: Array<[string, TarSource[]]> = [
      ['a .. path', [BIN, file('../evil', 'x')]],
      ['a .. inside a path', [BIN, file('bin/../../evil', 'x')]],
      ['an absolute path', [BIN, file('/tmp/holdfast-evil-abs', 'x')]],
      ['a symlink pointing outside (relative)', [BIN, { path: 'esc', type: 'symlink', mode: 0o777, mtime: 0, linkname: '../../..' }]],
      ['a symlink pointing outside (absolute)', [BIN, { path: 'esc', type: 'symlink', mode: 0o777, mtime: 0, linkname: '/etc' }]],
      ['a symlink inside, then a file through it', [BIN, { path: 'lib', type: 'directory', mode: 0o755, mtime: 0 }, { path: 'esc', type: 'symlink', mode: 0o777, mtime: 0, linkname: 'lib' }, file('esc/evil', 'x')]],
      ['a file over an earlier symlink', [BIN, { path: 'bin/x', type: 'symlink', mode: 0o777, mtime: 0, linkname: 'holdfast.js' }, file('bin/x', 'overwrite')]],
      ['a hardlink', [BIN, { path: 'hl', type: 'hardlink', mode: 0o644, mtime: 0, linkname: '../../../etc/passwd' }]],
      ['a fifo', [BIN, { path: 'f', type: 'fifo', mode: 0o644, mtime: 0 }]],
      ['a device', [BIN, { path: 'dev', type: 'charDevice', mode: 0o644, mtime: 0 }]],
      ['a long (pax) path with ..', [BIN, file(`${'d/'.repeat(60)}${'../'.repeat(62)}evil`, 'x')]]
    ]
    for (const [name, entries] of hostile) {
      it(name, async () => {
        const { installRoot, was } = await withV1()
        const { bytes, signed } = await signedTarball(entries, '2.0.0', manager)
        await assert.rejects(installPackage({ installRoot, source: chunked(bytes), signed, pinnedManagers: [manager.peerId], maxBytes: 10 * MiB }), holdfastCode('PACKAGE_PATH_UNSAFE'))
        assert.deepEqual(snapshot(installRoot), was)
        assert.equal(existsSync(join(installRoot, '..', 'evil')), false)
        assert.equal(existsSync(join(installRoot, 'versions', 'evil')), false)
        assert.equal(existsSync('/tmp/holdfast-evil-abs'), false)
      })
    }
  })

  it('tar: what the writer writes, the reader reads back, in pieces of any size', async () => {
    const long = `${'deep/'.repeat(40)}file.txt`
    const entries: TarSource[] = [{ path: 'd', type: 'directory', mode: 0o755, mtime: 1 }, file(long, 'hello'), file('empty', ''), { path: 'l', type: 'symlink', mode: 0o777, mtime: 2, linkname: 'x'.repeat(150) }]
    const chunks: Buffer[] = []
    for await (const c of writeTar(entries)) chunks.push(c)
    const tar = Buffer.concat(chunks)
    assert.equal(tar.byteLength % 512, 0)
    for (const piece of [1, 511, 4096]) {
      const seen: string[] = []
      for await (const ev of readTar(chunked(tar, piece))) {
        if (ev.kind === 'entry') seen.push(`${ev.entry.typeflag}:${ev.entry.path}:${ev.entry.size}:${ev.entry.linkname}`)
        if (ev.kind === 'data') seen.push(`data:${Buffer.from(ev.bytes).toString()}`)
      }
      assert.deepEqual(seen.filter(s => !s.startsWith('data:')), ['5:d:0:', `0:${long}:5:`, '0:empty:0:', `2:l:0:${'x'.repeat(150)}`])
      assert.equal(seen.filter(s => s.startsWith('data:')).map(s => s.slice(5)).join(''), 'hello')
    }
    // a truncated archive is refused, not taken as complete
    await assert.rejects((async () => { for await (const ev of readTar(chunked(tar.subarray(0, tar.byteLength - 1024)))) void ev })(), holdfastCode('PACKAGE_INVALID'))
  })

  it('packs this project (dist, bin, production node_modules) and the installed copy runs --version', async function () {
    this.timeout(600_000)
    const dir = fresh()
    const installRoot = join(dir, 'opt')
    const { tarball, signed } = await buildPackage({ projectDir: REPO, outDir: dir, privateKey: manager.privateKey, signer: manager.peerId, version: '0.1.0-test' })
    const res = await installPackage({ installRoot, source: createReadStream(tarball), signed, pinnedManagers: [manager.peerId], maxBytes: 200 * MiB })
    assert.equal(existsSync(join(res.dir, 'node_modules', 'libp2p', 'package.json')), true, 'production dependency included')
    assert.equal(existsSync(join(res.dir, 'node_modules', 'mocha')), false, 'dev dependency left out')
    assert.equal(existsSync(join(res.dir, 'dist', 'test')), false, 'tests left out')
    assert.equal(existsSync(join(res.dir, 'packaging', 'systemd', 'holdfast-node.service')), true, 'the units travel with the package')
    await switchCurrent(installRoot, '0.1.0-test')
    // run from a directory outside the checkout, so nothing resolves back into it
    const run = spawnSync(process.execPath, [join(installRoot, 'current', 'bin', 'holdfast.js'), '--version'], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
    assert.equal(run.status, 0, run.stderr)
    // it reports the version it was installed as (the signed manifest's), which is what the
    // manager waits to see announced after an upgrade, not the checkout's package.json
    assert.equal(run.stdout, '0.1.0-test\n')
    // and a command that loads the whole CLI with its dependencies
    const help = spawnSync(process.execPath, [join(installRoot, 'current', 'bin', 'holdfast.js'), 'init', '--help'], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
    assert.equal(help.status, 0, help.stderr)
    writeFileSync(join(dir, 'done'), '')
  })
})
