/**
 * Holdfast's version, reported in mDNS TXT records, the manifest and `holdfast --version`.
 *
 * Code installed from a signed package (src/deploy/package-install.ts) reports the version it
 * was installed as: installPackage writes the signed manifest into the version's directory,
 * beside dist/ (`.holdfast-package.json`), and that is what the manager asked for and waits to
 * see announced after an upgrade. Code run from a checkout or an npm install has no such file
 * and reports the version it was built as.
 */
import { readFileSync } from 'node:fs'

/** The version this source tree is, kept in step with package.json. */
export const BUILT_VERSION = '0.1.0'

/** Written by installPackage (INSTALLED_MANIFEST); not imported here so this module stays a leaf. */
const INSTALLED_MANIFEST_URL = new URL('../../.holdfast-package.json', import.meta.url)

function installedVersion (): string | undefined {
  try {
    const text = readFileSync(INSTALLED_MANIFEST_URL, 'utf8')
    if (text.length > 64 * 1024) return undefined
    const v = (JSON.parse(text) as { manifest?: { version?: unknown } }).manifest?.version
    return typeof v === 'string' && /^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/.test(v) ? v : undefined
  } catch {
    return undefined
  }
}

export const HOLDFAST_VERSION = installedVersion() ?? BUILT_VERSION
