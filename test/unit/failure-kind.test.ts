import { strict as assert } from 'node:assert'
import { classifyPullFailure } from '../../src/roles/manager/failure-kind.js'
import { HoldfastError } from '../../src/util/errors.js'

describe('classifyPullFailure: a link cut is not a failed conversation', function () {
  it('a transport failure after the manifest was answered is unreachable (retried in seconds)', function () {
    assert.equal(classifyPullFailure(new DOMException('The operation was aborted due to timeout', 'TimeoutError'), true, false), 'unreachable')
    assert.equal(classifyPullFailure(new HoldfastError('TIMEOUT', 'fetch reply: deadline passed'), true, false), 'unreachable')
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
    assert.equal(classifyPullFailure(new HoldfastError('REMOTE_ERROR', 'wrapped', {}, { cause: reset }), true, false), 'unreachable')
  })

  it('a conversation that went wrong backs off; our own stop is never unreachable', function () {
    assert.equal(classifyPullFailure(new HoldfastError('CHUNK_HASH_MISMATCH', 'bad chunk'), true, false), 'error')
    assert.equal(classifyPullFailure(new TypeError('bug'), true, false), 'error')
    assert.equal(classifyPullFailure(new HoldfastError('TIMEOUT', 'x'), true, true), 'error')
    assert.equal(classifyPullFailure(new HoldfastError('CHUNK_HASH_MISMATCH', 'x'), false, false), 'unreachable')
  })
})
