/**
 * What is never backed up, and what must wait.
 *
 * Ignored by default: office lock files and editor temporaries. They are transient by nature
 * and restoring them would confuse the programs that made them. Each folder can add glob
 * patterns: a pattern without '/' matches a name at any depth, one with '/' matches the path
 * relative to the folder; '*' and '?' stay within one component, '**' crosses them.
 *
 * Waiting: a document whose office lock file exists is open in an editor and may be half
 * saved; it is staged once the lock is gone (the editor closed it).
 */
const DEFAULT_PATTERNS = [
  '~$*', // Microsoft Office owner file: ~$report.docx
  '.~lock.*#', // LibreOffice lock: .~lock.report.odt#
  '.#*', // Emacs lock link
  '*.swp', '*.swo', // vim swap
  '~*.tmp' // Office temporary copies
]

export type IgnoreRule = (name: Buffer, rel: Buffer) => boolean

export function globToRegExp (glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++
        if (glob[i + 1] === '/') { i++; re += '(?:.*/)?' } else re += '.*'
      } else {
        re += '[^/]*'
      }
    } else if (c === '?') {
      re += '[^/]'
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end < 0) { re += '\\['; continue }
      re += '[' + glob.slice(i + 1, end).replace(/\\/g, '\\\\').replace(/^!/, '^') + ']'
      i = end
    } else {
      re += c.replace(/[.+^${}()|\\]/g, '\\$&')
    }
  }
  return new RegExp('^' + re + '$', 's')
}

/** Builds the ignore rule of one folder: the defaults plus its own patterns. */
export function ignoreRule (patterns: string[] = []): IgnoreRule {
  const byName: RegExp[] = []
  const byPath: RegExp[] = []
  for (const p of [...DEFAULT_PATTERNS, ...patterns]) {
    const trimmed = p.replace(/^\/+/, '')
    if (trimmed.includes('/') || p.startsWith('/')) byPath.push(globToRegExp(trimmed.replace(/\/+$/, ''))); else byName.push(globToRegExp(p))
  }
  return (name, rel) => {
    // latin1 keeps one char per byte, so patterns match raw names whatever their encoding
    const n = name.toString('latin1')
    if (byName.some(r => r.test(n))) return true
    if (byPath.length === 0) return false
    const path = rel.toString('latin1')
    return byPath.some(r => r.test(path))
  }
}

export const defaultIgnore: IgnoreRule = ignoreRule()

/**
 * Names in one directory that an office lock file marks as open. Word names its owner file
 * '~$' + name, replacing the first two characters of long names; LibreOffice uses
 * '.~lock.' + name + '#'.
 */
export function lockedNames (names: Buffer[]): { isLocked: (name: Buffer) => boolean, any: boolean } {
  const exact = new Set<string>()
  const truncated = new Set<string>()
  for (const raw of names) {
    const n = raw.toString('latin1')
    if (n.startsWith('~$') && n.length > 2) {
      exact.add(n.slice(2))
      truncated.add(n.slice(2))
    } else if (n.startsWith('.~lock.') && n.endsWith('#') && n.length > 8) {
      exact.add(n.slice(7, -1))
    }
  }
  const any = exact.size > 0
  return {
    any,
    isLocked: name => {
      if (!any) return false
      const n = name.toString('latin1')
      return exact.has(n) || (n.length > 2 && truncated.has(n.slice(2)))
    }
  }
}
