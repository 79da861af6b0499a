/**
 * Fuzz: the admin API's request decoders (MANAGER_API, AGENT_API). Any args object, built
 * from each command's own argument names and hostile values, decodes to a request or throws
 * ADMIN_BAD_REQUEST.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import { AGENT_API, MANAGER_API } from '../../src/admin/api.js'
import { isHoldfastError } from '../../src/util/errors.js'
import { fuzz, hostileKey, hostileValue } from './harness.js'

const NAMES = ['endpoint', 'target', 'toEndpoint', 'overwrite', 'snapshot', 'at', 'path', 'limit', 'expectPeers', 'timeoutMs', 'pattern', 'readData', 'rules', 'hold', 'dryRun', 'repackThreshold', 'utc']
const decoders = { ...Object.fromEntries(Object.entries(MANAGER_API).map(([k, v]) => [`manager ${k}`, v])), ...Object.fromEntries(Object.entries(AGENT_API).map(([k, v]) => [`agent ${k}`, v])) } as Record<string, (args: Record<string, unknown>) => unknown>
const value = fc.oneof(hostileValue, fc.constantFrom('/abs/dir', 'docs/a.txt', 'docs', '', '/', 1, 0, true, { keepLast: 3 }, { keepDaily: -1 }, { minAgeMs: 5 }, { bogus: 1 }))
const args = fc.dictionary(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...NAMES) }, { weight: 1, arbitrary: hostileKey }), value, { maxKeys: 5 })

describe('fuzz: admin API request decoders', () => {
  fuzz('admin api: every command, hostile args', fc.tuple(fc.constantFrom(...Object.keys(decoders)), args), ([cmd, a]) => {
    try {
      const req = decoders[cmd](a)
      assert.equal(typeof req, 'object')
    } catch (err) {
      assert.ok(isHoldfastError(err, 'ADMIN_BAD_REQUEST'), `${cmd} threw ${String(err)}`)
    }
  }, 3)
})
