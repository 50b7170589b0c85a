/** Entries per second, over every stream one read covers, above which they count as busy. */
const BUSY_ENTRIES_PER_SEC = 1500;
/** The rate is an average over about this long, decaying exponentially. */
const RATE_WINDOW_MS = 50;
/**
 * How long the reader waits before its next read while the streams are busy. 2 ms rather than 1:
 * in interleaved bursts of a plain worker the reads then carried about 27 entries instead of 15,
 * with less CPU per update in 7 bursts of 9 and a faster burst in 7 of 9.
 */
const PAUSE_MS = 2;

/**
 * Decides whether the foreign-worker bridge waits a moment before its next read of BullMQ's events
 * streams. While they run faster than about 1,500 entries a second in total over the queues one
 * read covers (every queue the process bridges; on Redis Cluster, those of one hash tag, each such
 * group with its own pause; an exponentially decaying average over about 50 ms),
 * it waits 2 ms after each read that returned entries: the next read then returns what came
 * meanwhile as one batch. Reading entry by entry costs a round trip per entry in the bridge, a
 * script call per entry in Redis and a wake-up per entry in every follower's reader; a batch costs
 * one read, one script call per job in it and one wake-up per follower's reader. An entry waits at
 * most about 2 ms longer, on every queue of the read.
 *
 * Queues at a steady 1,000 updates a second in all, the rate at which latency matters most, are read
 * entry by entry, as before: the average keeps well below the threshold even after a pause of
 * some tens of milliseconds, when the reader catches up with what came in meanwhile.
 */
export class BusyStreamPause {
  /** Entries read, each weighted by how recently: about the rate times {@link RATE_WINDOW_MS}. */
  private decayedEntries = 0;
  private lastReadAt?: number;

  /** Records a read of `entries` at `now` (ms, monotonic); returns how long to wait before the next read (0: none). */
  afterRead(entries: number, now: number): number {
    if (this.lastReadAt !== undefined) this.decayedEntries *= Math.exp(-(now - this.lastReadAt) / RATE_WINDOW_MS);
    this.lastReadAt = now;
    this.decayedEntries += entries;
    const perSec = (this.decayedEntries / RATE_WINDOW_MS) * 1000;
    return entries > 0 && perSec > BUSY_ENTRIES_PER_SEC ? PAUSE_MS : 0;
  }
}
