/**
 * Are we in CI? Any value of CI but empty, 0 or false (CI services set "true", "1", or their
 * own name), so a CI run cannot quietly fall back to skipping tests because its service
 * spells the variable differently.
 */
export function isCi (env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.CI ?? '').trim().toLowerCase()
  return v !== '' && v !== '0' && v !== 'false'
}
