/**
 * An agent's side of /holdfast/deploy/1: it already has its role, so it takes an offer only
 * when it carries a package (a rolling upgrade, `holdfast deploy --version`). The signature is
 * checked against the pinned managers before a byte is read; once the package is installed
 * and current the agent exits for its supervisor to restart it into the new version.
 */
import { installPackage, switchCurrent, verifyManifest } from '../../deploy/package.js'
import { DEPLOY_LIMITS, type DeployTarget } from '../../protocols/deploy.js'
import { HoldfastError } from '../../util/errors.js'
import type { Logger } from '../../util/log.js'

/**
 * The install root, or the refusal of a package: a host started without `--install-root` runs
 * under no supervisor, so nothing would start the version it installed (or roll it back).
 */
export function requireInstallRoot (installRoot: string | undefined): string {
  if (installRoot === undefined) throw new HoldfastError('DEPLOY_REFUSED', 'this host runs without an install root, so nothing would restart it into a package; start it under the supervisor (holdfast node --install-root DIR, as the systemd unit does)')
  return installRoot
}

export function upgradeTarget (installRoot: string | undefined, managers: string[], log: Logger, restart: () => void): DeployTarget {
  let busy = false
  return {
    check: async (offer) => {
      if (offer.package === undefined) throw new HoldfastError('DEPLOY_REFUSED', 'this host runs the agent already; an offer without a package changes nothing here (central settings come with `holdfast config`)')
      if (busy) throw new HoldfastError('DEPLOY_REFUSED', 'an upgrade is already under way on this host')
      await verifyManifest(offer.package, managers)
      requireInstallRoot(installRoot)
    },
    apply: async (offer, manager, pkg, signal) => {
      if (offer.package === undefined || pkg === undefined) throw new HoldfastError('DEPLOY_REFUSED', 'no package')
      busy = true
      try {
        const root = requireInstallRoot(installRoot)
        const installed = await installPackage({ installRoot: root, source: pkg, signed: offer.package, pinnedManagers: managers, maxBytes: DEPLOY_LIMITS.maxPackageBytes, signal })
        await switchCurrent(root, installed.version)
        log.info('upgrade installed; restarting into it', { manager: manager.slice(-8), version: installed.version })
        return { version: installed.version, role: 'agent' }
      } catch (err) {
        busy = false
        throw err
      }
    },
    applied: () => { restart() }
  }
}
