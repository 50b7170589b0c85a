import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { JobEvent } from '../contract/job-event.js';
import { compareStreamIds, rangeStartAfter, readIdAfter, timestampOf } from './stream-id.js';

type RawEntry = [id: string, fields: string[]];
type XReadReply = Array<[key: string, entries: RawEntry[]]> | null;

/**
 * Turns stream entries into events (fields `type` and `data`). `traceId` is the job's (one per
 * job, known to the reader from the job's metadata, so entries do not carry it).
 */
export function toEvents(entries: RawEntry[], traceId?: string): JobEvent[] {
  return entries.map(([id, fields]) => {
    let type = '';
    let data = 'null';
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i] === 'type') type = fields[i + 1];
      else if (fields[i] === 'data') data = fields[i + 1];
    }
    const event: JobEvent = { id, type, data: JSON.parse(data) as unknown, ts: timestampOf(id) };
    if (traceId !== undefined) event.traceId = traceId;
    return event;
  });
}

const BLOCK_MS = 5000;
const READ_COUNT = 1000;
/**
 * A subscriber holding more undelivered events than this, or more than {@link MAX_PENDING_BYTES}
 * of them, stops being fed: it drops them and reads on from Redis once its client asks for more.
 * A client that does not read thus costs at most this window, whatever the job produces (the
 * job's stream is the buffer), and never a window of 5000 events of up to `maxEventBytes` each.
 */
const MAX_PENDING = 5000;
const MAX_PENDING_BYTES = 1024 * 1024;

/** Approximate sizes of stream entries: the lengths of their id and field values. */
function sizesOf(entries: RawEntry[]): number[] {
  return entries.map(([id, fields]) => fields.reduce((sum, field) => sum + field.length, id.length));
}

/**
 * One follower of one job's stream: receives events after its cursor, exactly once, in order.
 * Created by {@link EventStreamReader.subscribe}; always `close()` it.
 */
export class StreamSubscription {
  private pending: JobEvent[] = [];
  private pendingBytes = 0;
  /** Id of the last event handed out by {@link next}: where it reads on after dropping its pending events. */
  private delivered: string;
  private wake?: () => void;
  /** True while fed by the shared reader; false after overflow, until it catches up. */
  attached = true;
  closed = false;
  /** Set when the job vanished (expired, or Redis lost it) while followed: nothing will ever come. */
  gone = false;

  constructor(
    readonly key: string,
    /** Id of the last event handed out (or queued); entries at or before it are skipped. */
    public cursor: string,
    private readonly reader: EventStreamReader,
    /** The trace id of the job (the same for every subscription of the key), put on its events. */
    readonly traceId?: string,
  ) {
    this.delivered = cursor;
  }

  /** Called by the reader with the key's new entries (possibly some already seen) and their sizes. */
  offer(events: JobEvent[], sizes: number[]): void {
    let start = 0;
    while (start < events.length && compareStreamIds(events[start].id, this.cursor) <= 0) start++;
    if (start === events.length) return;
    const fresh = start === 0 ? events : events.slice(start);
    for (let i = start; i < sizes.length; i++) this.pendingBytes += sizes[i];
    this.pending = this.pending.length ? this.pending.concat(fresh) : fresh;
    this.cursor = fresh[fresh.length - 1].id;
    if (this.pending.length > MAX_PENDING || this.pendingBytes > MAX_PENDING_BYTES) {
      // Its client does not keep up: keep nothing for it; it reads on from what it was handed last.
      this.reader.detach(this);
      this.pending = [];
      this.pendingBytes = 0;
      this.cursor = this.delivered;
    }
    this.wake?.();
  }

  /** Number of events held for it, not yet handed out (for tests). */
  get pendingCount(): number {
    return this.pending.length;
  }

  /**
   * The next events (at least one), or `[]` when `timeoutMs` passed or `signal` aborted first.
   * A follower that waits again and again passes neither (`Infinity`, no signal) and calls
   * {@link close} to end a wait: no timer and no abort listener per wait then.
   */
  async next(timeoutMs: number, signal?: AbortSignal): Promise<JobEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.pending.length && !this.attached && !this.closed) {
        const caughtUp = await this.reader.fetchAfter(this.key, this.cursor, this.traceId);
        if (caughtUp.length) {
          this.cursor = this.delivered = caughtUp[caughtUp.length - 1].id;
          return caughtUp;
        }
        this.reader.attach(this);
      }
      const left = deadline - Date.now();
      if (this.pending.length || this.closed || signal?.aborted || left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = left === Infinity ? undefined : setTimeout(() => done(), left);
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        signal?.addEventListener('abort', done, { once: true });
        this.wake = done;
      });
    }
    const events = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (events.length) this.delivered = events[events.length - 1].id;
    return events;
  }

  /** Detaches it so that its next read fetches what it may have missed from its cursor on. */
  catchUp(): void {
    this.reader.detach(this);
    this.wake?.();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader.detach(this);
    this.wake?.();
  }

  /** Closes it because its job no longer exists: its follower ends instead of waiting forever. */
  markGone(): void {
    this.gone = true;
    this.close();
  }
}

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
}

const SWEEP_MS = 5000;

/**
 * The one blocking reader of a process: a single connection runs `XREAD BLOCK` over the streams
 * of every followed job and hands each entry to every subscriber of that job, so N HTTP clients
 * on M jobs cost one connection and one read per batch, not N of either.
 */
export class EventStreamReader {
  private readonly logger = new Logger('JobQueue');
  private readonly byKey = new Map<string, Set<StreamSubscription>>();
  private running = false;
  private closed = false;
  /** Keys the XREAD in flight was sent with; a new key means that XREAD must be interrupted. */
  private inFlightKeys?: ReadonlyMap<string, number>;
  private clientId?: number;
  private unblocking = false;
  private lastSweep = Date.now();

  constructor(
    private readonly blocking: Redis,
    private readonly commands: Redis,
    private readonly options: EventStreamReaderOptions,
  ) {
    // After a reconnect ioredis resends the XREAD that was in flight ahead of any new command,
    // so a CLIENT ID sent at 'ready' is answered only once that XREAD returns (up to BLOCK_MS);
    // meanwhile interrupts went to the dead connection's id and new followers waited. CLIENT is
    // a handshake command: sent at 'connect', it goes out before the resend.
    blocking.on('connect', () => void this.refreshClientId());
    blocking.on('close', () => (this.clientId = undefined));
  }

  async start(): Promise<void> {
    await this.refreshClientId();
  }

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
    let set = this.byKey.get(subscription.key);
    if (!set) {
      this.byKey.set(subscription.key, (set = new Set()));
      this.keysChanged = true;
    }
    set.add(subscription);
    if (this.inFlightKeys && !this.inFlightKeys.has(subscription.key)) void this.interrupt();
    this.ensureRunning();
  }

  detach(subscription: StreamSubscription): void {
    subscription.attached = false;
    const set = this.byKey.get(subscription.key);
    if (!set) return;
    set.delete(subscription);
    if (!set.size) {
      this.byKey.delete(subscription.key);
      this.keysChanged = true;
    }
  }

  /** A plain read for a subscriber catching up on its own after an overflow. */
  async fetchAfter(key: string, cursor: string, traceId?: string): Promise<JobEvent[]> {
    const entries = (await this.commands.xrange(key, rangeStartAfter(cursor), '+', 'COUNT', READ_COUNT)) as RawEntry[];
    return toEvents(entries, traceId);
  }

  /** Number of jobs followed right now (for metrics and tests). */
  get followedJobs(): number {
    return this.byKey.size;
  }

  close(): void {
    this.closed = true;
    for (const set of this.byKey.values()) for (const subscription of [...set]) subscription.close();
    this.byKey.clear();
  }

  private async refreshClientId(): Promise<void> {
    try {
      this.clientId = (await this.blocking.client('ID')) as number;
    } catch {
      this.clientId = undefined;
      return;
    }
    // Keys followed while the id was unknown are not in the XREAD in flight: interrupt it now.
    const inFlight = this.inFlightKeys;
    if (inFlight && [...this.byKey.keys()].some((key) => !inFlight.has(key))) void this.interrupt();
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
      const pipeline = this.commands.pipeline();
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

  /** Ends the XREAD in flight early so the next one includes newly followed keys. */
  private async interrupt(): Promise<void> {
    if (this.unblocking) return;
    this.unblocking = true;
    try {
      // The XREAD may not have reached Redis yet (it travels on another connection): retry briefly.
      for (let tries = 0; tries < 50 && this.inFlightKeys && this.clientId !== undefined; tries++) {
        const unblocked = await this.commands.client('UNBLOCK', this.clientId);
        if (unblocked === 1 || !this.inFlightKeys) break;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    } catch {
      // The block times out on its own within BLOCK_MS.
    } finally {
      this.unblocking = false;
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

  /** The followed keys as the last XREAD was built: rebuilt only when a key comes or goes. */
  private keyList: string[] = [];
  /** Position of each key in {@link keyList} (also the set of keys the XREAD in flight covers). */
  private keyIndex = new Map<string, number>();
  private keysChanged = true;

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
      this.inFlightKeys = this.keyIndex;
      try {
        reply = (await this.blocking.xread('COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...ids)) as XReadReply;
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
