/**
 * Valid protocol values for the fuzz suites to start from (not a test file itself).
 */
import fc from 'fast-check'
import { ENTRY_TYPES, isSafeFolderName, isSafeRelativePath, type StagedEntry } from '../../src/model/entry.js'

const chunkIds = fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 3 }).map(ids => new Uint8Array(Buffer.concat(ids)))

export const stagedEntry: fc.Arbitrary<StagedEntry> = fc.record({
  folder: fc.string({ minLength: 1, maxLength: 20 }),
  path: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  type: fc.constantFrom(...ENTRY_TYPES),
  mode: fc.integer({ min: 0, max: 0xffffffff }),
  mtimeNs: fc.bigInt({ min: -(10n ** 24n), max: 10n ** 24n }),
  size: fc.nat(),
  chunks: chunkIds,
  target: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
  linkKey: fc.option(fc.string({ maxLength: 64 }), { nil: undefined })
// the decoders refuse unsafe paths (ENTRY_PATH_UNSAFE): valid values are safe ones, mutations find the rest
}).filter(e => isSafeFolderName(e.folder) && isSafeRelativePath(e.path)).map(e => {
  const out: StagedEntry = { folder: e.folder, path: e.path, type: e.type, mode: e.mode, mtimeNs: e.mtimeNs, size: e.size, chunks: e.chunks }
  if (e.target !== undefined) out.target = e.target
  if (e.linkKey !== undefined) out.linkKey = e.linkKey
  return out
})

export const setSummary = fc.record({
  id: fc.integer({ min: 1, max: 1000 }),
  sealedAt: fc.nat(),
  entries: fc.nat(),
  chunks: fc.nat(),
  rawBytes: fc.nat(),
  storedBytes: fc.nat()
})
