/**
 * The first `current` of a host set up by hand (an npm install, an unpacked tarball, a
 * checkout): when the supervisor starts and its install root has no `current` link, the code
 * it was started from is copied into `versions/<its version>/` — the same parts a package
 * carries (package-build.ts: TOP_LEVEL and the production dependencies) — and made current,
 * recorded as healthy (it is what runs this very process). From then on the host has a version
 * to roll back to, and the unit can run `<root>/current/bin/holdfast.js`.
 *
 * Copied, not linked: an `npm update` of the tree it came from must not change a version the
 * supervisor may go back to.
 */
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fsyncDir } from '../util/durable-file.js'
import { HoldfastError } from '../util/errors.js'
import { productionDependencies, TOP_LEVEL } from './package-build.js'
import { currentVersion, markHealthy, switchCurrent, versionDir, VERSIONS_DIR } from './version-switch.js'

/** Returns the version made current, or undefined when the root had a `current` already. */
export async function bootstrapCurrent (installRoot: string, projectDir: string, version: string): Promise<string | undefined> {
  if (currentVersion(installRoot) !== undefined) return undefined
  const dir = versionDir(installRoot, version)
  // a directory there already (installed from a package, the link lost) is used as it is
  if (!existsSync(dir)) {
    if (!existsSync(join(projectDir, 'bin', 'holdfast.js'))) throw new HoldfastError('UPGRADE_FAILED', `${projectDir} has no bin/holdfast.js to start ${installRoot} from`)
    mkdirSync(join(installRoot, VERSIONS_DIR), { recursive: true, mode: 0o755 })
    const partial = `${dir}.partial`
    // a .partial left by a crash during an earlier copy is never trusted: start again
    rmSync(partial, { recursive: true, force: true })
    try {
      for (const top of TOP_LEVEL) {
        if (!existsSync(join(projectDir, top))) continue
        mkdirSync(dirname(join(partial, top)), { recursive: true })
        cpSync(join(projectDir, top), join(partial, top), { recursive: true, verbatimSymlinks: true })
      }
      // each production dependency without its own node_modules: the lockfile lists the
      // nested production ones separately, and the nested dev ones must stay out
      for (const dep of productionDependencies(projectDir)) {
        const from = join(projectDir, dep)
        mkdirSync(dirname(join(partial, dep)), { recursive: true })
        cpSync(from, join(partial, dep), { recursive: true, verbatimSymlinks: true, filter: src => src === from || basename(src) !== 'node_modules' })
      }
      fsyncDir(partial)
      renameSync(partial, dir)
      fsyncDir(join(installRoot, VERSIONS_DIR))
    } catch (err) {
      rmSync(partial, { recursive: true, force: true })
      throw err
    }
  }
  await switchCurrent(installRoot, version)
  markHealthy(installRoot, version)
  return version
}
