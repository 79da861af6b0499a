/**
 * Names never backed up by default: office lock files and editor temporaries. They are
 * transient by nature and restoring them would confuse the programs that made them.
 */
const DEFAULT_PATTERNS: RegExp[] = [
  /^~\$/, // Microsoft Office owner file: ~$report.docx
  /^\.~lock\..*#$/, // LibreOffice lock: .~lock.report.odt#
  /^\.#/, // Emacs lock link
  /\.sw[po]$/, // vim swap
  /^~.*\.tmp$/i // Office temporary copies
]

export function defaultIgnore (name: Buffer): boolean {
  const text = name.toString('latin1')
  return DEFAULT_PATTERNS.some(p => p.test(text))
}
