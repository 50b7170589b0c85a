import type { Cluster, Redis } from 'ioredis';
import type { JobEvent } from '../contract/job-event.js';
import { ReadLane } from './read-lane.js';
import { toEvents, type RawEntry } from './stream-entries.js';
import { rangeStartAfter } from './stream-id.js';
import { StreamSubscription } from './stream-subscription.js';

export { toEvents } from './stream-entries.js';
export { StreamSubscription } from './stream-subscription.js';

const READ_COUNT = 1000;

/** Options of {@link EventStreamReader}. */
export interface EventStreamReaderOptions {
  /**
   * The key whose existence says that a followed stream's job still exists (the job's metadata: a
   * queued job has no stream yet). Followers of a job that vanished are closed as gone, since no
   * entry will ever wake them.
   */
  liveKeyOf: (streamKey: string) => string;
  /** How often followed jobs are checked for existence (default 5000 ms). */
  sweepMs?: number;
  /**
   * Redis Cluster: the slot group of a stream key (its hash tag), and a new connection for each
   * group's blocking read. One Redis server reads every stream in one `XREAD` on the connection
   * the reader was made with.
   */
  cluster?: {
    groupOf: (streamKey: string) => string;
    openBlocking: () => Redis | Cluster;
  };
  /** A key the wake-up streams of one server's reads are named after (default `job-queue:reader`). */
  wakeKeyPrefix?: string;
}

/**
 * The blocking reader of a process: one `XREAD BLOCK` over the streams of every followed job
 * (on Redis Cluster: one per slot group of followed jobs, at most as many as there are groups)
 * hands each entry to every subscriber of that job, so N HTTP clients on M jobs cost one
 * connection and one read per batch, not N of either.
 */
export class EventStreamReader {
  private readonly lanes = new Map<string, ReadLane>();
  private readonly laneBlocking: Array<Redis | Cluster> = [];
  private closed = false;

  constructor(
    private readonly blocking: Redis | Cluster,
    private readonly commands: Redis | Cluster,
    private readonly options: EventStreamReaderOptions,
  ) {}

  /**
   * Follows `key` after `cursor`. The caller must have read everything up to `cursor` itself.
   * `traceId`: the job's, when it was enqueued in a trace (events get it).
   */
  subscribe(key: string, cursor: string, traceId?: string): StreamSubscription {
    const subscription = new StreamSubscription(key, cursor, this, traceId);
    this.attach(subscription);
    return subscription;
  }

  attach(subscription: StreamSubscription): void {
    if (subscription.closed) return;
    if (this.closed) {
      // Caught up on its own while the reader closed: nothing would ever feed it.
      subscription.close();
      return;
    }
    subscription.attached = true;
    this.laneOf(subscription.key).add(subscription);
  }

  detach(subscription: StreamSubscription): void {
    subscription.attached = false;
    this.lanes.get(this.groupOf(subscription.key))?.remove(subscription);
  }

  /** A plain read for a subscriber catching up on its own after an overflow. */
  async fetchAfter(key: string, cursor: string, traceId?: string): Promise<JobEvent[]> {
    const entries = (await this.commands.xrange(key, rangeStartAfter(cursor), '+', 'COUNT', READ_COUNT)) as RawEntry[];
    return toEvents(entries, traceId);
  }

  /** Number of jobs followed right now (for metrics and tests). */
  get followedJobs(): number {
    let followed = 0;
    for (const lane of this.lanes.values()) followed += lane.size;
    return followed;
  }

  /** Number of blocking reads this reader runs (one per slot group with followers on Redis Cluster). */
  get blockingReads(): number {
    let reads = 0;
    for (const lane of this.lanes.values()) if (lane.size) reads++;
    return reads;
  }

  close(): void {
    this.closed = true;
    for (const lane of this.lanes.values()) lane.close();
    this.lanes.clear();
    for (const connection of this.laneBlocking) connection.disconnect();
  }

  private groupOf(key: string): string {
    return this.options.cluster?.groupOf(key) ?? '';
  }

  private laneOf(key: string): ReadLane {
    const group = this.groupOf(key);
    let lane = this.lanes.get(group);
    if (!lane) {
      const { cluster, liveKeyOf, sweepMs } = this.options;
      let blocking = this.blocking;
      if (cluster) {
        blocking = cluster.openBlocking();
        this.laneBlocking.push(blocking);
      }
      // On Redis Cluster the wake-up stream must share the slot of the group's streams: its tag.
      const slotKey = cluster
        ? `${this.options.wakeKeyPrefix ?? 'job-queue'}:${group}`
        : (this.options.wakeKeyPrefix ?? 'job-queue:reader');
      lane = new ReadLane({ blocking, commands: this.commands, slotKey, liveKeyOf, sweepMs });
      this.lanes.set(group, lane);
    }
    return lane;
  }
}
