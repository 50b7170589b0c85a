import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { Cluster, Redis } from 'ioredis';
import { compareStreamIds, readIdAfter } from './stream-id.js';
import { sizesOf, toEvents, type RawEntry } from './stream-entries.js';
import type { StreamSubscription } from './stream-subscription.js';

type XReadReply = Array<[key: string, entries: RawEntry[]]> | null;

const BLOCK_MS = 5000;
const READ_COUNT = 1000;
/** A wake-up stream left behind by a process that died expires after this long (ms). */
const WAKE_TTL_MS = 60_000;
const SWEEP_MS = 5000;

/** What a {@link ReadLane} reads with and how it tells whether a followed job still exists. */
export interface ReadLaneOptions {
  /** Its own connection for the blocking `XREAD` (nothing else is sent on it). */
  blocking: Redis | Cluster;
  /** Commands: wake-ups, existence checks. */
  commands: Redis | Cluster;
  /**
   * A key in the same slot as every stream of this lane (on Redis Cluster one `XREAD` reads one
   * slot): the lane's wake-up stream is named after it.
   */
  slotKey: string;
  /** The key whose existence says that a followed stream's job still exists. */
  liveKeyOf: (streamKey: string) => string;
  /** How often followed jobs are checked for existence (ms). */
  sweepMs?: number;
}

/**
 * One blocking reader over a set of followed streams that one `XREAD` can cover (on one Redis
 * server: all of them; on Redis Cluster: those of one slot). It hands each entry to every
 * subscriber of that stream. A stream followed while its `XREAD` is in flight ends that read at
 * once: the lane writes to its own wake-up stream, which every read of the lane includes. (A
 * wake-up stream works the same on one server and on a cluster, where `CLIENT UNBLOCK` would have
 * to reach the node the read waits on, and it cannot be lost to a read that is still on its way:
 * the read starts after the wake-up's id and returns at once.)
 */
export class ReadLane {
  private readonly logger = new Logger('JobQueue');
  readonly byKey = new Map<string, Set<StreamSubscription>>();
  private readonly wakeKey: string;
  /** Id of the last wake-up read; the next read returns at once on any later one. */
  private wakeId = '0-0';
  private running = false;
  private closed = false;
  /** Keys the XREAD in flight was sent with; a new key means that XREAD must be interrupted. */
  private inFlightKeys?: ReadonlyMap<string, number>;
  /** Counts the XREADs sent; {@link wokenRead} is the one a wake-up was last written for. */
  private readSeq = 0;
  private wokenRead = -1;
  private lastSweep = Date.now();
  /** The followed keys as the last XREAD was built: rebuilt only when a key comes or goes. */
  private keyList: string[] = [];
  /** Position of each key in {@link keyList} (also the set of keys the XREAD in flight covers). */
  private keyIndex = new Map<string, number>();
  private keysChanged = true;

  constructor(private readonly options: ReadLaneOptions) {
    this.wakeKey = `${options.slotKey}:wake:${randomUUID()}`;
  }

  /** Number of streams it follows. */
  get size(): number {
    return this.byKey.size;
  }

  add(subscription: StreamSubscription): void {
    let set = this.byKey.get(subscription.key);
    if (!set) {
      this.byKey.set(subscription.key, (set = new Set()));
      this.keysChanged = true;
    }
    set.add(subscription);
    if (this.inFlightKeys && !this.inFlightKeys.has(subscription.key)) void this.wake();
    this.ensureRunning();
  }

  remove(subscription: StreamSubscription): void {
    const set = this.byKey.get(subscription.key);
    if (!set) return;
    set.delete(subscription);
    if (!set.size) {
      this.byKey.delete(subscription.key);
      this.keysChanged = true;
    }
  }

  /** Closes every subscription; the read in flight ends with its connection. */
  close(): void {
    this.closed = true;
    for (const set of this.byKey.values()) for (const subscription of [...set]) subscription.close();
    this.byKey.clear();
    this.options.commands.del(this.wakeKey).catch(() => undefined);
  }

  /**
   * Ends the XREAD in flight early so that the next one includes newly followed keys. One wake-up
   * per read is enough: it ends that read whenever it lands (before the read reaches Redis too,
   * since the read asks for wake-ups after the last one it saw), and the next read covers every
   * key followed by then.
   */
  private async wake(): Promise<void> {
    if (this.wokenRead === this.readSeq) return;
    this.wokenRead = this.readSeq;
    try {
      const { commands } = this.options;
      await Promise.all([commands.xadd(this.wakeKey, 'MAXLEN', '1', '*', 'w', '1'), commands.pexpire(this.wakeKey, WAKE_TTL_MS)]);
    } catch {
      // The block times out on its own within BLOCK_MS.
    }
  }

  private ensureRunning(): void {
    if (this.running || this.closed) return;
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
      if (this.byKey.size && !this.closed) this.ensureRunning();
    });
  }

  /**
   * Closes the followers of jobs that no longer exist. An expired job (or one Redis lost) gets no
   * more entries, so nothing else would ever end a wait on it. Runs between two XREADs, at most
   * every `sweepMs`; a failed check (Redis away) is simply tried again next time.
   */
  private async sweep(): Promise<void> {
    this.lastSweep = Date.now();
    const keys = [...this.byKey.keys()];
    if (!keys.length) return;
    let replies: Array<[Error | null, unknown]> | null;
    try {
      const pipeline = this.options.commands.pipeline();
      for (const key of keys) pipeline.exists(this.options.liveKeyOf(key));
      replies = await pipeline.exec();
    } catch {
      return;
    }
    keys.forEach((key, index) => {
      const [error, exists] = replies?.[index] ?? [null, 1];
      if (error || exists !== 0) return;
      for (const subscription of [...(this.byKey.get(key) ?? [])]) subscription.markGone();
    });
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.byKey.size && !this.closed) {
      if (this.keysChanged) {
        this.keysChanged = false;
        this.keyList = [...this.byKey.keys()];
        this.keyIndex = new Map(this.keyList.map((key, index) => [key, index]));
      }
      const keys = this.keyList;
      const ids = keys.map((key) => {
        let min: string | undefined;
        for (const subscription of this.byKey.get(key)!) {
          if (min === undefined || compareStreamIds(subscription.cursor, min) < 0) min = subscription.cursor;
        }
        return readIdAfter(min!);
      });
      let reply: XReadReply;
      this.readSeq++;
      this.inFlightKeys = this.keyIndex;
      try {
        reply = (await this.options.blocking.xread(
          'COUNT',
          READ_COUNT,
          'BLOCK',
          BLOCK_MS,
          'STREAMS',
          ...keys,
          this.wakeKey,
          ...ids,
          this.wakeId,
        )) as XReadReply;
        failures = 0;
      } catch (error) {
        this.inFlightKeys = undefined;
        if (this.closed) return;
        if (failures++ % 20 === 0) this.logger.warn(`Event reader: ${(error as Error).message}; retrying`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * failures, 1000)));
        continue;
      }
      this.inFlightKeys = undefined;
      if (Date.now() - this.lastSweep >= (this.options.sweepMs ?? SWEEP_MS)) await this.sweep();
      if (!reply) continue;
      for (const [key, entries] of reply) {
        if (key === this.wakeKey) {
          if (entries.length) this.wakeId = entries[entries.length - 1][0];
          continue;
        }
        const set = this.byKey.get(key);
        if (!set || !entries.length) continue;
        // Every subscription of a key is of the same job: the first one's trace id is the job's.
        const events = toEvents(entries, set.values().next().value!.traceId);
        const sizes = sizesOf(entries);
        const from = ids[this.keyIndex.get(key)!];
        // (A subscription that detaches while being offered deletes itself: safe while iterating.)
        for (const subscription of set) {
          // Subscribed after this XREAD was sent, with a cursor before the id it read from: the
          // entries in between are not in this reply. It reads them itself, then attaches again.
          if (from !== '0-0' && compareStreamIds(subscription.cursor, from) < 0) subscription.catchUp();
          else subscription.offer(events, sizes);
        }
      }
      // Let the woken followers write their events out before the next XREAD is sent: sending it
      // first would put its write (a system call) in front of every delivery of this batch.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
