/**
 * Packages and upgrades: the one import for the node role and the deploy protocol. See
 * docs/architecture.md, "Packages and upgrades".
 */
export { signManifest, verifyManifest, isSafeVersion, canonicalManifestBytes, type PackageManifest, type SignedManifest } from './package-manifest.js'
export { buildPackage, type BuildOptions } from './package-build.js'
export { installPackage, type InstallOptions } from './package-install.js'
export { switchCurrent, rollback, currentVersion, effectiveState, markHealthy, versionDir } from './version-switch.js'
export { readUpgradeState, type UpgradeState, type UpgradePhase, type UpgradeEvent } from './upgrade-state.js'
export { runSupervised, reportHealthy, EXIT_RESTART_INTO_CURRENT, HEALTH_FILE_ENV, type SupervisorOptions } from './supervisor.js'
