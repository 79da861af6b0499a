/**
 * Folder rules: one line that each endpoint expands into its own protected folders, for a fleet
 * whose machines have different users. The one rule so far:
 *
 *   homes:uid>=N   the home directory of every local user (from /etc/passwd) with uid ≥ N,
 *                  named by the user name; homes that do not exist are left out.
 */
import { readFileSync, statSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import { HoldfastError } from '../util/errors.js'
import type { CentralFolder } from './central-settings.js'

export interface FolderRule { kind: 'homes', minUid: number }

/** /etc/passwd of a host is a few KiB; one far larger is not read. */
const MAX_PASSWD_BYTES = 4 * 1024 * 1024

/** Parses a rule; CONFIG_INVALID names what is wrong with it. */
export function parseFolderRule (rule: string): FolderRule {
  const m = /^homes:uid>=(\d{1,10})$/.exec(rule.trim())
  if (m === null) throw new HoldfastError('CONFIG_INVALID', `folder rule '${rule.slice(0, 80)}' is not understood (the one rule is 'homes:uid>=N')`, { key: 'folderRule' })
  const minUid = Number(m[1])
  if (minUid > 0xffffffff) throw new HoldfastError('CONFIG_INVALID', `folder rule '${rule}': uid ${minUid} is out of range`, { key: 'folderRule' })
  return { kind: 'homes', minUid }
}

/**
 * The folders a rule names on this host. `passwd` is the text of a passwd file (default: this
 * host's /etc/passwd); `isDir` says whether a home exists (a test gives its own).
 */
export function expandFolderRule (rule: string, options: { passwd?: string, isDir?: (path: string) => boolean } = {}): CentralFolder[] {
  const parsed = parseFolderRule(rule)
  const passwd = options.passwd ?? readPasswd()
  const isDir = options.isDir ?? isDirectory
  const out: CentralFolder[] = []
  const seen = new Set<string>()
  for (const line of passwd.split('\n')) {
    // name:password:uid:gid:gecos:home:shell
    const f = line.split(':')
    if (f.length < 7 || line.startsWith('#')) continue
    const [name, , uidText, , , home] = f
    if (!/^\d{1,10}$/.test(uidText) || Number(uidText) < parsed.minUid) continue
    // the name becomes a folder name (one path component) and the home an absolute path
    if (!/^[^/\0]{1,255}$/.test(name) || name === '.' || name === '..') continue
    if (!isAbsolute(home) || home === '/' || home.includes('\0') || seen.has(home) || !isDir(home)) continue
    seen.add(home)
    out.push({ path: home, name })
  }
  return out
}

function readPasswd (): string {
  try {
    const buf = readFileSync('/etc/passwd')
    return buf.subarray(0, MAX_PASSWD_BYTES).toString('utf8')
  } catch (err) {
    throw new HoldfastError('CONFIG_REFUSED', `cannot read /etc/passwd to expand the folder rule: ${(err as Error).message}`, { key: 'folderRule' })
  }
}

function isDirectory (path: string): boolean {
  try { return statSync(path).isDirectory() } catch { return false }
}
