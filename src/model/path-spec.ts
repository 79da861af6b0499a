/**
 * Path specs: the "<folder>[/<path>]" strings a user types for ls, versions, find and
 * restore --path. One parser for all of them, so each command reads the same string the same
 * way: slashes around the spec and runs of slashes inside it do not count, the first
 * component is the folder, the rest the path's bytes under it.
 *
 * Paths are raw bytes and displayPath shows a non-UTF-8 name with \xNN escapes; a user copies
 * that form back. Since a UTF-8 name may itself hold the text "\x41", the literal reading
 * comes first and the unescaped one second: a caller takes the first candidate that exists.
 */

const SLASH = 0x2f
const ESCAPE = /\\x([0-9a-fA-F]{2})/g

/** A folder, or one path under it (and, for a directory, everything below). */
export interface PathSpec {
  folder: string
  /** The path's bytes under the folder; undefined for the folder itself. */
  path?: Buffer
}

/** The spec without surrounding slashes and with runs of slashes made one ('' for none). */
export function normalizeSpecText (text: string): string {
  return text.replace(/\/{2,}/g, '/').replace(/^\/|\/$/g, '')
}

/** The bytes of `text` with each \xNN escape made the byte NN (undefined: no escapes). */
export function unescapeBytes (text: string): Buffer | undefined {
  if (text.match(ESCAPE) === null) return undefined
  const parts: Buffer[] = []
  let last = 0
  for (const m of text.matchAll(ESCAPE)) {
    parts.push(Buffer.from(text.slice(last, m.index), 'utf8'), Buffer.from([parseInt(m[1], 16)]))
    last = (m.index ?? 0) + m[0].length
  }
  parts.push(Buffer.from(text.slice(last), 'utf8'))
  return Buffer.concat(parts)
}

/**
 * The readings of a spec, literal first: [] for an empty spec (the root: every folder), one
 * for a spec without \xNN escapes after the folder, two for one with them.
 */
export function parsePathSpec (text: string): PathSpec[] {
  const trimmed = normalizeSpecText(text)
  if (trimmed === '') return []
  const slash = trimmed.indexOf('/')
  if (slash < 0) return [{ folder: trimmed }]
  const folder = trimmed.slice(0, slash)
  const rest = trimmed.slice(slash + 1)
  const out: PathSpec[] = [{ folder, path: Buffer.from(rest, 'utf8') }]
  const unescaped = unescapeBytes(rest)
  if (unescaped !== undefined && !unescaped.equals(out[0].path as Buffer)) out.push({ folder, path: unescaped })
  return out
}

/** Whether an entry is the spec's folder or path, or lies under it. */
export function specCovers (spec: PathSpec, entry: { folder: string, path: Uint8Array }): boolean {
  if (entry.folder !== spec.folder) return false
  if (spec.path === undefined) return true
  const p = Buffer.from(entry.path.buffer, entry.path.byteOffset, entry.path.byteLength)
  const rel = spec.path
  if (p.equals(rel)) return true
  return p.length > rel.length && p[rel.length] === SLASH && p.subarray(0, rel.length).equals(rel)
}

/** The first reading for which `exists` holds (the user's string names that one). */
export function firstExisting (candidates: readonly PathSpec[], exists: (spec: PathSpec) => boolean): PathSpec | undefined {
  for (const c of candidates) if (exists(c)) return c
  return undefined
}
