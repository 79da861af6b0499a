/**
 * Store commands (browse, verify, stats, …) run against the manager through its admin socket.
 * Registered in src/cli/main.ts.
 */
import type { Command } from '../command.js'

export const storeCommands: Record<string, Command> = {}
