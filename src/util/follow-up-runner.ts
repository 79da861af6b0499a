/**
 * Runs a task on request, one run at a time. A request made while a run is going does not
 * join that run, which may have begun before whatever the caller wants covered (a staging
 * round whose walk has passed the directory just written to); it gets the next run, one run
 * shared by every request made meanwhile.
 */
export class FollowUpRunner<T> {
  private running?: Promise<T>
  private next?: Promise<T>

  constructor (private readonly task: () => Promise<T>) {}

  /** The run going now, if any. */
  get current (): Promise<T> | undefined { return this.running }

  /** The run going now if there is one (whatever it began before), else a new run. */
  async join (): Promise<T> { return await (this.running ?? this.run()) }

  async run (): Promise<T> {
    const current = this.running
    if (current !== undefined) {
      this.next ??= (async () => {
        await current.catch(() => {})
        this.next = undefined
        return await this.run()
      })()
      return await this.next
    }
    const started: Promise<T> = this.task().finally(() => {
      if (this.running === started) this.running = undefined
    })
    this.running = started
    return await started
  }
}
