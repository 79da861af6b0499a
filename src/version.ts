/** Holdfast's version, reported in mDNS TXT records and the manifest. Kept in step with package.json. */
export const HOLDFAST_VERSION = '0.1.0'
