import type { JobEvent } from '../contract/job-event.js';
import type { EventStreamReader } from './event-stream-reader.js';
import { compareStreamIds } from './stream-id.js';

/**
 * A subscriber holding more undelivered events than this, or more than {@link MAX_PENDING_BYTES}
 * of them, stops being fed: it drops them and reads on from Redis once its client asks for more.
 * A client that does not read thus costs at most this window, whatever the job produces (the
 * job's stream is the buffer), and never a window of 5000 events of up to `maxEventBytes` each.
 */
const MAX_PENDING = 5000;
const MAX_PENDING_BYTES = 1024 * 1024;

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
