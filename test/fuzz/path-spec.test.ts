/**
 * Fuzz: path specs. Any text parses (to no, one or two readings) in bounded time; a spec
 * built from a folder and path bytes parses back to them; and what displayPath shows for any
 * raw-byte path, typed back, names that path (the \xNN round trip the parser promises).
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import { parsePathSpec, normalizeSpecText } from '../../src/model/path-spec.js'
import { displayPath } from '../../src/model/entry.js'
import { fuzz } from './harness.js'

const component = fc.uint8Array({ minLength: 1, maxLength: 12 }).filter(b => !b.includes(0x2f))
const rawPath = fc.array(component, { minLength: 1, maxLength: 4 }).map(cs => Buffer.concat(cs.flatMap((c, i) => i === 0 ? [Buffer.from(c)] : [Buffer.from('/'), Buffer.from(c)])))
const folder = fc.string({ minLength: 1, maxLength: 12 }).filter(s => !s.includes('/'))

describe('fuzz: path specs', () => {
  fuzz('path spec: any text', fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: fc.constantFrom('/', '\\', 'x', '0', 'a', 'F'), maxLength: 300 })), text => {
    const specs = parsePathSpec(text)
    assert.ok(specs.length <= 2)
    for (const s of specs) {
      assert.ok(s.folder.length > 0 && !s.folder.includes('/'))
      if (s.path !== undefined) assert.ok(s.path.length > 0)
    }
    assert.equal(normalizeSpecText(normalizeSpecText(text)), normalizeSpecText(text))
  }, 3)

  fuzz('path spec: displayPath → parse names the same bytes', fc.tuple(folder, rawPath), ([f, p]) => {
    const specs = parsePathSpec(`${f}/${displayPath(p)}`)
    const text = normalizeSpecText(`${f}/${displayPath(p)}`)
    if (text !== `${f}/${displayPath(p)}`) return // a shown name with a leading or trailing slash is not a spec
    assert.equal(specs[0].folder, f)
    assert.ok(specs.some(s => s.path !== undefined && s.path.equals(p)), `no reading of '${displayPath(p)}' is the path`)
  }, 2)
})
