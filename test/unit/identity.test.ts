import { strict as assert } from 'node:assert'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IDENTITY_FILE, loadOrCreateIdentity } from '../../src/node/identity.js'
import { holdfastCode } from './helpers.js'

describe('identity', () => {
  let root: string
  let n = 0
  const freshDir = (): string => join(root, `node-${n++}`)

  before(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-identity-')) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  it('creates the key file with mode 0600 (and the data dir) on first use', async () => {
    const dir = freshDir()
    assert.equal(existsSync(dir), false)
    const id = await loadOrCreateIdentity(dir)
    const file = join(dir, IDENTITY_FILE)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.equal(statSync(dir).mode & 0o077, 0, 'the data dir is not open to others')
    assert.match(id.peerId, /^12D3KooW/, 'an Ed25519 peer id')
    assert.equal(id.privateKey.type, 'Ed25519')
    assert.equal(id.privateKey.publicKey.toString(), id.peerId)
    assert.deepEqual(readdirSync(dir), [IDENTITY_FILE], 'no temporary file is left behind')
  })

  it('creates the key even where a process killed mid-write left its temporary file under this pid', async () => {
    // pids repeat (in a container the daemon is often pid 1): such a file must not block a start
    const dir = freshDir()
    mkdirSync(dir, { recursive: true })
    const stale = `${join(dir, IDENTITY_FILE)}.tmp-${process.pid}`
    writeFileSync(stale, 'partial')
    const id = await loadOrCreateIdentity(dir)
    assert.equal((await loadOrCreateIdentity(dir)).peerId, id.peerId)
    assert.equal(statSync(join(dir, IDENTITY_FILE)).mode & 0o777, 0o600)
  })

  it('returns the same identity on the next start', async () => {
    const dir = freshDir()
    const first = await loadOrCreateIdentity(dir)
    const bytes = readFileSync(join(dir, IDENTITY_FILE))
    const second = await loadOrCreateIdentity(dir)
    assert.equal(second.peerId, first.peerId)
    assert.ok(second.privateKey.equals(first.privateKey))
    assert.deepEqual(readFileSync(join(dir, IDENTITY_FILE)), bytes, 'the file is not rewritten')
  })

  it('gives different data dirs different identities', async () => {
    const a = await loadOrCreateIdentity(freshDir())
    const b = await loadOrCreateIdentity(freshDir())
    assert.notEqual(a.peerId, b.peerId)
  })

  it('refuses a key file readable or writable by group or others (CONFIG_INVALID, chmod 600), leaving it as it is', async () => {
    const dir = freshDir()
    const { peerId } = await loadOrCreateIdentity(dir)
    const file = join(dir, IDENTITY_FILE)
    const bytes = readFileSync(file)
    for (const loose of [0o644, 0o640, 0o604, 0o666, 0o620, 0o602]) {
      chmodSync(file, loose)
      await assert.rejects(loadOrCreateIdentity(dir), holdfastCode('CONFIG_INVALID', 'chmod 600'), `mode ${loose.toString(8)}`)
      assert.equal(statSync(file).mode & 0o777, loose, 'not silently tightened: the admin decides')
      assert.deepEqual(readFileSync(file), bytes, 'the key is kept')
    }
    chmodSync(file, 0o600)
    assert.equal((await loadOrCreateIdentity(dir)).peerId, peerId)
  })

  it('leaves an owner-only mode it finds alone', async () => {
    const dir = freshDir()
    await loadOrCreateIdentity(dir)
    const file = join(dir, IDENTITY_FILE)
    chmodSync(file, 0o400)
    await loadOrCreateIdentity(dir)
    assert.equal(statSync(file).mode & 0o777, 0o400)
  })

  it('refuses a damaged key file with CONFIG_INVALID and leaves it in place', async () => {
    for (const content of [Buffer.from('not a key'), Buffer.alloc(0), Buffer.from([0x08, 0x01, 0x12, 0x40, 1, 2, 3])]) {
      const dir = freshDir()
      await loadOrCreateIdentity(dir)
      const file = join(dir, IDENTITY_FILE)
      writeFileSync(file, content)
      await assert.rejects(loadOrCreateIdentity(dir), holdfastCode('CONFIG_INVALID', 'damaged'))
      assert.deepEqual(readFileSync(file), content, 'a damaged identity must not be silently replaced')
    }
  })

  it('refuses a truncated copy of a real key file', async () => {
    const dir = freshDir()
    await loadOrCreateIdentity(dir)
    const file = join(dir, IDENTITY_FILE)
    const bytes = readFileSync(file)
    writeFileSync(file, bytes.subarray(0, bytes.length - 5))
    await assert.rejects(loadOrCreateIdentity(dir), holdfastCode('CONFIG_INVALID'))
  })
})
