/**
 * How many slots the jobs' own keys are spread over. Each job's keys share the hash tag of its
 * shard (`{<prefix>:<shard>}`), so every script of a job touches one slot, and the jobs of one
 * shard can be read by one `XREAD` on Redis Cluster (which refuses a command whose keys lie in
 * different slots). 16 shards spread the jobs over every master of a cluster of up to a few
 * masters, and cap the blocking reads of a process at 16. Every process of a deployment must use
 * the same number: it is part of the key layout, not an option.
 */
export const JOB_SHARDS = 16;

/** FNV-1a (32 bits) of `text`: a stable, cheap spread of job ids over {@link JOB_SHARDS}. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * The prefix of this library's own keys for a configured `prefix`: braces (and `%`) percent-encoded,
 * the rest unchanged (`{bull}` gives `%7Bbull%7D`, `bull` stays `bull`). Without braces the keys do
 * not all land in BullMQ's slot; encoded rather than dropped, so that two prefixes that differ only
 * by their braces (`bull` and `{bull}`, say before and after a move to a hash-tag prefix on the same
 * server) never share a job's keys.
 */
export function ownKeyPrefix(prefix: string): string {
  return prefix.replace(/[%{}]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Key names. BullMQ's keys are `<prefix>:<queue>:...` as BullMQ makes them (on Redis Cluster the
 * prefix carries a hash tag, e.g. `{bull}`, so that BullMQ's scripts touch one slot). This
 * library's own keys use {@link ownKeyPrefix} and the hash tag of their job's shard:
 * `%7Bbull%7D:{%7Bbull%7D:7}:reports:42:meta` for `{bull}`, `bull:{bull:7}:reports:42:meta` for `bull`.
 */
export class RedisKeys {
  /** The prefix of this library's own keys (see {@link ownKeyPrefix}). */
  readonly own: string;

  constructor(readonly prefix: string) {
    this.own = ownKeyPrefix(prefix);
  }

  /** The shard of a job (job ids are unique per BullMQ queue only). */
  static shardOf(queue: string, jobId: string): number {
    return fnv1a(`${queue}:${jobId}`) % JOB_SHARDS;
  }

  /** The hash tag every key of `queue`'s job `jobId` carries (the same for every job of its shard). */
  jobTag(queue: string, jobId: string): string {
    return `{${this.own}:${RedisKeys.shardOf(queue, jobId)}}`;
  }

  /** Hash: name, owner (empty for jobs added without one), state, attempt, counters, terminal event id, result or error. */
  meta(queue: string, jobId: string): string {
    return `${this.own}:${this.jobTag(queue, jobId)}:${queue}:${jobId}:meta`;
  }

  /** Stream: the job's events. */
  events(queue: string, jobId: string): string {
    return `${this.own}:${this.jobTag(queue, jobId)}:${queue}:${jobId}:events`;
  }

  /** The queue of a key of one job (`<own>:{<own>:<shard>}:<queue>:<jobId>:...`; queue names hold no `:`). */
  static queueOfJobKey(key: string): string {
    const start = key.indexOf('}:') + 2;
    return key.slice(start, key.indexOf(':', start));
  }

  /** The hash tag of a key of one job: keys with the same tag can be read by one command. */
  static tagOfJobKey(key: string): string {
    return key.slice(key.indexOf('{'), key.indexOf('}') + 1);
  }

  /**
   * A key of the job whose events stream is `eventsKey` that holds nothing: the scripts that end a
   * job write a compact copy of its stream there and rename it over the stream (same slot).
   */
  static spareOfEvents(eventsKey: string): string {
    return RedisKeys.siblingOfEvents(eventsKey, 'spare');
  }

  /** The meta hash of the job whose events stream is `eventsKey`. */
  metaOfEvents(eventsKey: string): string {
    return RedisKeys.siblingOfEvents(eventsKey, 'meta');
  }

  /** The key `kind` of the job whose events stream is `eventsKey` (`...:<jobId>:events` → `...:<jobId>:<kind>`). */
  private static siblingOfEvents(eventsKey: string, kind: 'meta' | 'spare'): string {
    return `${eventsKey.slice(0, -':events'.length)}:${kind}`;
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
    return `${this.own}:{bridge:${queue}}:lease`;
  }

  /** How far the foreign-worker bridge of `queue` has applied BullMQ's events stream (an entry id). */
  bridgePosition(queue: string): string {
    return `${this.own}:{bridge:${queue}}:position`;
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
    return `${this.own}:{breaker:${encodeURIComponent(name)}}:state`;
  }

  /** Sorted set: the recent failed attempts of the circuit breaker of `name`, by failure time. */
  breakerFailures(name: string): string {
    return `${this.own}:{breaker:${encodeURIComponent(name)}}:failures`;
  }
}
