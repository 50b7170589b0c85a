/**
 * The prefix of this library's keys that belong to no job (circuit breakers, the foreign-worker
 * bridge, the readers' wake streams) for a configured `prefix`: braces (and `%`) percent-encoded,
 * the rest unchanged (`{bull}` gives `%7Bbull%7D`, `bull` stays `bull`). Those keys carry hash tags
 * of their own; encoded rather than dropped, so that two prefixes that differ only by their braces
 * (`bull` and `{bull}`) never share a key.
 */
export function ownKeyPrefix(prefix: string): string {
  return prefix.replace(/[%{}]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The suffixes of a job's own keys, after BullMQ's key of the job (`<prefix>:<queue>:<id>`). */
const JOB_KEY_SUFFIX = { meta: ':jq-meta', events: ':jq-events', spare: ':jq-spare' } as const;

/**
 * The hash tag of `key` by Redis Cluster's rule (the text between the first `{` and the first `}`
 * after it, when not empty), in its braces; the whole key in braces when it has none. Keys with the
 * same tag lie in one slot, and can be read by one command on Redis Cluster.
 */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open, close + 1) : `{${key}}`;
}

/**
 * True when `name` (a key prefix or a queue name) holds a hash tag of its own: a `{` followed by a
 * `}` with text between. On Redis Cluster BullMQ's keys of a queue (`<prefix>:<queue>:...`) lie in
 * one slot only when the prefix or, under a prefix without one, the queue name holds one.
 */
export function carriesHashTag(name: string): boolean {
  const open = name.indexOf('{');
  return open >= 0 && name.indexOf('}', open + 1) > open + 1;
}

/**
 * True when BullMQ's keys of `queue` under `prefix` (`<prefix>:<queue>:...`) lie in one hash slot,
 * as BullMQ's scripts need on Redis Cluster: the prefix holds a hash tag, or the queue name does.
 */
export function queueFitsCluster(prefix: string, queue: string): boolean {
  return carriesHashTag(prefix) || carriesHashTag(queue);
}

/**
 * Key names. BullMQ's keys are `<prefix>:<queue>:...` as BullMQ makes them. A job's own keys, its
 * events stream and metadata hash, are BullMQ's key of the job with a suffix
 * (`bull:reports:42:jq-events`, `{bull}:reports:42:jq-meta`): they lie in the hash slot of the
 * job's BullMQ keys, whatever hash tag the prefix or the queue name carries, so one script can run
 * BullMQ's command and the stream write together, on one Redis server and on Redis Cluster.
 * (The suffixes end neither in `:meta` nor in `:events`, which tools that look for BullMQ's queues
 * by their key names take for a queue's keys; BullMQ allows no `:` in a queue name or in a job id a
 * caller chooses.)
 */
export class RedisKeys {
  /** The prefix of this library's keys that belong to no job (see {@link ownKeyPrefix}). */
  readonly own: string;

  constructor(readonly prefix: string) {
    this.own = ownKeyPrefix(prefix);
  }

  /** Hash: name, owner (empty for jobs added without one), state, attempt, the writer of its calls, terminal event id, result or error (its event count is its stream's length). */
  meta(queue: string, jobId: string): string {
    return this.bullJob(queue, jobId) + JOB_KEY_SUFFIX.meta;
  }

  /** Stream: the job's events. */
  events(queue: string, jobId: string): string {
    return this.bullJob(queue, jobId) + JOB_KEY_SUFFIX.events;
  }

  /** The meta hash and events stream of the job whose BullMQ key (its hash) is `bullJobKey`. */
  static ofBullJob(bullJobKey: string): { meta: string; events: string } {
    return { meta: bullJobKey + JOB_KEY_SUFFIX.meta, events: bullJobKey + JOB_KEY_SUFFIX.events };
  }

  /**
   * The queue of a key of one job (`<prefix>:<queue>:<jobId>:jq-...`). Queue names hold no `:`, nor
   * do the ids BullMQ lets callers choose; its own ids of the jobs a job scheduler adds do
   * (`repeat:<scheduler>:<time>`).
   */
  static queueOfJobKey(key: string): string {
    const job = key.slice(0, key.lastIndexOf(':'));
    const scheduled = /:repeat:[^:]*:\d+$/.exec(job);
    const queueKey = scheduled ? job.slice(0, scheduled.index) : job.slice(0, job.lastIndexOf(':'));
    return queueKey.slice(queueKey.lastIndexOf(':') + 1);
  }

  /**
   * A key of the job whose events stream is `eventsKey` that holds nothing: the scripts that end a
   * job write a compact copy of its stream there and rename it over the stream (same slot).
   */
  static spareOfEvents(eventsKey: string): string {
    return eventsKey.slice(0, -JOB_KEY_SUFFIX.events.length) + JOB_KEY_SUFFIX.spare;
  }

  /** The meta hash of the job whose events stream is `eventsKey`. */
  metaOfEvents(eventsKey: string): string {
    return eventsKey.slice(0, -JOB_KEY_SUFFIX.events.length) + JOB_KEY_SUFFIX.meta;
  }

  /** BullMQ's own hash of a job (BullMQ's key layout: `<prefix>:<queue>:<id>`). */
  bullJob(queue: string, jobId: string): string {
    return `${this.prefix}:${queue}:${jobId}`;
  }

  /**
   * String: written before a `WAIT` that vouches for a write made on another connection (see
   * `ReplicaAcks.afterWriteElsewhere`), in the slot of that write's `key` on Redis Cluster (one
   * per hash tag), one for the server otherwise.
   */
  ackBeacon(key: string, cluster: boolean): string {
    return cluster ? `${this.own}:ack-beacon:${hashTagOf(key)}` : `${this.own}:ack-beacon`;
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
