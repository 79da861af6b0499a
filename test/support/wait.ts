import { setTimeout as delay } from 'node:timers/promises'

/**
 * Polls `check` every 100 ms until it returns a value, for at most `ms`: a bounded wait on an
 * observable condition (never a sleep standing in for synchronisation).
 */
export async function until<T> (what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await delay(100)
  }
}
