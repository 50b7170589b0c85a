/**
 * Key names. Every key of one job shares the hash tag `{<jobId>}`, so a job's scripts touch one
 * slot. (That alone does not make Redis Cluster work: the shared reader's `XREAD` spans many jobs.)
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** Hash: owner, name, state, attempt, counters, terminal event id, result or error. */
  meta(jobId: string): string {
    return `${this.prefix}:{${jobId}}:meta`;
  }

  /** Stream: the job's events. */
  events(jobId: string): string {
    return `${this.prefix}:{${jobId}}:events`;
  }

  /** The meta hash of the job whose events stream is `eventsKey`. */
  metaOfEvents(eventsKey: string): string {
    return `${eventsKey.slice(0, -':events'.length)}:meta`;
  }

  /** Pub/sub channel on which cancels reach the worker running the job. */
  cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }

  /** BullMQ queue name (BullMQ adds the prefix itself). */
  static readonly QUEUE_NAME = 'jobs';
}
