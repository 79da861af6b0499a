/**
 * How admin commands find their daemon, and how they print: shared by every command module.
 */
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { loadConfig, type Role } from '../config/config.js'
import type { CommandOptions } from './command.js'

export const socketOptions: CommandOptions = {
  socket: { type: 'string' },
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' }
}

export function socketHelp (role: Role | 'daemon' = 'daemon'): string {
  const who = role === 'daemon' ? 'the daemon' : `the ${role}`
  return `  --socket PATH     admin socket of ${who}
  --config FILE     or: ${who}'s config file (its admin socket is used)
  --data-dir DIR    or: ${who}'s data directory (DIR/admin.sock${role === 'daemon' ? '' : `; default ~/.holdfast/${role}`})
  --json            machine-readable output`
}

export function defaultDataDir (role: Role): string {
  return join(homedir(), '.holdfast', role)
}

/** --socket, else --config's adminSocket, else --data-dir/admin.sock, else the role's default. */
export function socketPath (values: Record<string, unknown>, role: Role): string {
  if (typeof values.socket === 'string') return resolve(values.socket)
  if (typeof values.config === 'string') return loadConfig(values.config).adminSocket
  const dir = typeof values['data-dir'] === 'string' ? resolve(values['data-dir']) : defaultDataDir(role)
  return join(dir, 'admin.sock')
}

/** JSON with --json, else the human rendering. */
export function print (values: Record<string, unknown>, data: unknown, human: () => string): void {
  process.stdout.write((values.json === true ? JSON.stringify(data, null, 2) : human()) + '\n')
}
