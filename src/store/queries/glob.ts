/**
 * Glob patterns for `holdfast find`, matched against raw-byte paths.
 *
 * Paths are bytes (not necessarily UTF-8), so a pattern is compiled to a RegExp over the
 * latin1 view of the bytes (one character per byte): a literal character matches its UTF-8
 * bytes, `?` matches one UTF-8 character (or one stray byte), `*` any run of bytes without
 * '/', `**` as a whole component any number of components, `[abc]`, `[a-z]`, `[!x]` one
 * character of a set, and `\` escapes the next character, except that `\xNN` is the byte NN
 * (as displayPath shows a non-UTF-8 name, and as model/path-spec.ts reads it). Slashes around
 * the pattern and runs of slashes in it count as path specs' do: a pattern without wildcards
 * selects the path that ls, versions and restore --path select for the same string.
 */
import { HoldfastError } from '../../util/errors.js'
import { normalizeSpecText } from '../../model/path-spec.js'

export interface CompiledGlob {
  /** Anchored, over the latin1 view of the path's bytes. */
  regex: RegExp
  /** Bytes every match starts with (a range of the path index can serve them). */
  prefix: Buffer
  /** The longest run of bytes every match contains (a cheap filter in SQL). */
  literal: Buffer
}

/** One UTF-8 character (or a byte that starts none), not '/'. */
const ONE_CHAR = '(?:[\\x00-\\x2e\\x30-\\x7f]|[\\xc0-\\xff][\\x80-\\xbf]*|[\\x80-\\xbf])'

type Token = { kind: 'lit', bytes: Buffer } | { kind: 're', source: string }

function latin1 (bytes: Buffer): string { return bytes.toString('latin1') }

function escapeRe (s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, c => '\\' + c).replace(/[\x00-\x1f\x7f-\xff]/g, c => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'))
}

function bad (pattern: string, why: string): HoldfastError {
  return new HoldfastError('ADMIN_BAD_REQUEST', `bad pattern '${pattern}': ${why}`)
}

function tokenize (pattern: string): Token[] {
  const chars = Array.from(pattern)
  const tokens: Token[] = []
  const lit = (c: string): void => { tokens.push({ kind: 'lit', bytes: Buffer.from(c, 'utf8') }) }
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]
    if (c === '\\' && chars[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test((chars[i + 2] ?? '') + (chars[i + 3] ?? ''))) {
      tokens.push({ kind: 'lit', bytes: Buffer.from([parseInt(chars[i + 2] + chars[i + 3], 16)]) })
      i += 3
    } else if (c === '\\') {
      if (i + 1 >= chars.length) throw bad(pattern, 'ends with a lone backslash')
      lit(chars[++i])
    } else if (c === '*') {
      let j = i
      while (j < chars.length && chars[j] === '*') j++
      const stars = j - i
      const startsComponent = i === 0 || chars[i - 1] === '/'
      const endsComponent = j === chars.length || chars[j] === '/'
      if (stars >= 2 && startsComponent && endsComponent) {
        if (j < chars.length) {
          tokens.push({ kind: 're', source: '(?:.*/)?' }) // '**/': zero or more directories
          j++
        } else if (i > 0) {
          // '/**' at the end: everything under the directory; the '/' before it is a literal
          tokens.push({ kind: 're', source: '.*' })
        } else {
          tokens.push({ kind: 're', source: '.*' })
        }
      } else {
        tokens.push({ kind: 're', source: '[^/]*' })
      }
      i = j - 1
    } else if (c === '?') {
      tokens.push({ kind: 're', source: ONE_CHAR })
    } else if (c === '[') {
      const end = classEnd(chars, i)
      if (end < 0) { lit(c); continue } // an unclosed '[' is itself
      tokens.push({ kind: 're', source: classSource(pattern, chars.slice(i + 1, end)) })
      i = end
    } else {
      lit(c)
    }
  }
  return tokens
}

function classEnd (chars: string[], open: number): number {
  let i = open + 1
  if (chars[i] === '!' || chars[i] === '^') i++
  if (chars[i] === ']') i++ // a ']' first in the set is a member
  for (; i < chars.length; i++) {
    if (chars[i] === '\\') { i++; continue }
    if (chars[i] === ']') return i
  }
  return -1
}

function classSource (pattern: string, body: string[]): string {
  let negate = false
  let i = 0
  if (body[0] === '!' || body[0] === '^') { negate = true; i = 1 }
  const ascii: string[] = []
  const wide: string[] = []
  for (; i < body.length; i++) {
    let c = body[i]
    if (c === '\\' && i + 1 < body.length) c = body[++i]
    if (body[i + 1] === '-' && i + 2 < body.length) {
      let to = body[i + 2]
      i += 2
      if (to === '\\' && i + 1 < body.length) to = body[++i]
      if ((c.codePointAt(0) ?? 0) > 0x7f || (to.codePointAt(0) ?? 0) > 0x7f) throw bad(pattern, 'ranges of non-ASCII characters are not supported')
      if (c > to) throw bad(pattern, `empty range ${c}-${to}`)
      ascii.push(`${escapeRe(c)}-${escapeRe(to)}`)
    } else if ((c.codePointAt(0) ?? 0) > 0x7f) {
      wide.push(escapeRe(latin1(Buffer.from(c, 'utf8'))))
    } else {
      ascii.push(escapeRe(c))
    }
  }
  const asciiClass = ascii.length === 0 ? undefined : `[${ascii.join('')}]`
  const positive = [...(asciiClass === undefined ? [] : [asciiClass]), ...wide].join('|')
  if (!negate) return positive === '' ? '(?!)' : `(?:${positive})`
  // one character that is none of them (and never '/')
  return positive === '' ? ONE_CHAR : `(?:(?!${positive})${ONE_CHAR})`
}

function compileTokens (tokens: Token[], anchorAnyDepth: boolean): CompiledGlob {
  let source = anchorAnyDepth ? '(?:.*/)?' : ''
  const prefixParts: Buffer[] = []
  let prefixOpen = !anchorAnyDepth
  let best = Buffer.alloc(0)
  let run: Buffer[] = []
  const endRun = (): void => {
    const joined = Buffer.concat(run)
    if (joined.length > best.length) best = joined
    run = []
  }
  for (const t of tokens) {
    if (t.kind === 'lit') {
      source += escapeRe(latin1(t.bytes))
      run.push(t.bytes)
      if (prefixOpen) prefixParts.push(t.bytes)
    } else {
      source += t.source
      endRun()
      prefixOpen = false
    }
  }
  endRun()
  return { regex: new RegExp(`^${source}$`, 's'), prefix: Buffer.concat(prefixParts), literal: best }
}

export interface FolderPattern {
  /** Matches paths relative to the folder. */
  forPath: CompiledGlob
  /** When the pattern also names folders: its first component, for folder names, and the rest. */
  folderPart?: { folder: RegExp, rest: CompiledGlob }
}

/**
 * Compiles a find pattern. Without a '/', it matches a name at any depth ('*.docx'). With one,
 * it matches the whole path under a folder ('docs/**\/report*'), or, when its first component
 * matches the folder's name, the rest of it under that folder ('home/docs/*.md').
 */
export function compileFindPattern (pattern: string): FolderPattern {
  const trimmed = normalizeSpecText(pattern)
  if (trimmed === '') throw bad(pattern, 'it is empty')
  const hasSlash = trimmed.includes('/') || pattern.startsWith('/')
  if (!hasSlash) return { forPath: compileTokens(tokenize(trimmed), true) }
  const out: FolderPattern = { forPath: compileTokens(tokenize(trimmed), false) }
  const slash = firstUnescapedSlash(trimmed)
  if (slash > 0) {
    const head = trimmed.slice(0, slash)
    const rest = trimmed.slice(slash + 1).replace(/^\/+/, '')
    if (!/^\*\*+$/.test(head) && rest !== '') {
      out.folderPart = { folder: compileTokens(tokenize(head), false).regex, rest: compileTokens(tokenize(rest), false) }
    }
  }
  return out
}

function firstUnescapedSlash (s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\') { i++; continue }
    if (s[i] === '/') return i
  }
  return -1
}

/** Tests a raw path (or folder name) against a compiled pattern. */
export function globMatches (regex: RegExp, bytes: Uint8Array | string): boolean {
  const s = typeof bytes === 'string' ? latin1(Buffer.from(bytes, 'utf8')) : latin1(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
  return regex.test(s)
}
