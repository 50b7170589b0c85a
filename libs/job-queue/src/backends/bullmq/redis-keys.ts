/**
 * Key names. Every key of one job shares the hash tag `{<queue>:<jobId>}` (job ids are unique per
 * BullMQ queue only), so a job's scripts touch one slot. (That alone does not make Redis Cluster
 * work: the shared reader's `XREAD` spans many jobs.)
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** Hash: name, owner (empty for jobs added without one), state, attempt, counters, terminal event id, result or error. */
  meta(queue: string, jobId: string): string {
    return `${this.prefix}:{${queue}:${jobId}}:meta`;
  }

  /** Stream: the job's events. */
  events(queue: string, jobId: string): string {
    return `${this.prefix}:{${queue}:${jobId}}:events`;
  }

  /** The queue of a key of one job (`<prefix>:{<queue>:<jobId>}:...`; queue names hold no `:`). */
  static queueOfJobKey(key: string): string {
    const start = key.indexOf('{') + 1;
    return key.slice(start, key.indexOf(':', start));
  }

  /** The meta hash of the job whose events stream is `eventsKey`. */
  metaOfEvents(eventsKey: string): string {
    return `${eventsKey.slice(0, -':events'.length)}:meta`;
  }

  /** BullMQ's own hash of a job (BullMQ's key layout: `<prefix>:<queue>:<id>`). */
  bullJob(queue: string, jobId: string): string {
    return `${this.prefix}:${queue}:${jobId}`;
  }

  /** Pub/sub channel on which cancels reach the worker running the job (message: `<queue>\n<id>`). */
  cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }

  /** The lease of the foreign-worker bridge of `queue` (its value: the holder's token). */
  bridgeLease(queue: string): string {
    return `${this.prefix}:{bridge:${queue}}:lease`;
  }

  /** How far the foreign-worker bridge of `queue` has applied BullMQ's events stream (an entry id). */
  bridgePosition(queue: string): string {
    return `${this.prefix}:{bridge:${queue}}:position`;
  }

  /** BullMQ's events stream of `queue`. */
  bullEvents(queue: string): string {
    return `${this.prefix}:${queue}:events`;
  }

  /** BullMQ's list of the active jobs of `queue`. */
  bullActive(queue: string): string {
    return `${this.prefix}:${queue}:active`;
  }

  /** BullMQ's sorted set (by finish time) of the `completed` or `failed` jobs of `queue`. */
  bullFinished(queue: string, state: 'completed' | 'failed'): string {
    return `${this.prefix}:${queue}:${state}`;
  }

  /**
   * Hash: the shared state of the circuit breaker of job name `name` (absent while closed). The
   * name is URI-encoded: a processor job's name may hold any character, braces included.
   */
  breakerState(name: string): string {
    return `${this.prefix}:{breaker:${encodeURIComponent(name)}}:state`;
  }

  /** Sorted set: the recent failed attempts of the circuit breaker of `name`, by failure time. */
  breakerFailures(name: string): string {
    return `${this.prefix}:{breaker:${encodeURIComponent(name)}}:failures`;
  }
}
