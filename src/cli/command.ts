import type { ParseArgsConfig } from 'node:util'

export type CommandOptions = NonNullable<ParseArgsConfig['options']>

/** One CLI command: options are data, the handler a plain function returning the exit status. */
export interface Command {
  summary: string
  usage: string
  options: CommandOptions
  run: (values: Record<string, unknown>, positionals: string[]) => Promise<number>
}
