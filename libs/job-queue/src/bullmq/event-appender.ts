import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { JobScripts } from './job-scripts.js';

/** Why an appender stopped taking events. */
export type AppenderStop = 'final' | 'stale' | 'limit';

const BATCH_EVENTS = 500;
/** Unflushed events above which `push` makes the producer wait (backpressure). */
const HIGH_WATER = 5000;
const RESOLVED = Promise.resolve();

/**
 * Writes one attempt's handler events to the job's stream: in order, in batches (one script call
 * per batch, while the previous one is in flight the next one fills up), retried with the same
 * sequence number after errors so that a batch is never appended twice.
 */
export class EventAppender {
  private readonly writer = randomUUID();
  private buffer: string[] = [];
  private seq = 0;
  private flushing?: Promise<void>;
  private drainWaiters: Array<() => void> = [];
  /** Set once the stream refuses events; later events are dropped. */
  stopped?: AppenderStop;
  /** Id and type of the last appended event (for BullMQ progress). */
  last?: { id: string; type: string; appended: number };
  private appended = 0;

  constructor(
    private readonly scripts: JobScripts,
    private readonly metaKey: string,
    private readonly eventsKey: string,
    private readonly attempt: number,
    private readonly maxEvents: number,
    private readonly onStop: (reason: AppenderStop) => void,
    private readonly onFlushed: (last: { id: string; type: string; appended: number }) => void,
    private readonly logger: Logger,
    /** True once retrying is pointless (the process is shutting down past its grace period). */
    private readonly abandoned: () => boolean,
  ) {}

  /** Queues an event; resolves at once unless too many are unflushed. */
  push(type: string, json: string): Promise<void> {
    if (this.stopped) return RESOLVED;
    this.buffer.push(type, json);
    if (!this.flushing) this.flushing = this.flushLoop();
    if (this.buffer.length / 2 < HIGH_WATER) return RESOLVED;
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Flushes everything queued; resolves once all of it is in Redis (or refused). */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.buffer.length && !this.stopped) {
        const batch = this.buffer.splice(0, BATCH_EVENTS * 2);
        const seq = ++this.seq;
        const types = batch.filter((_, index) => index % 2 === 0);
        const reply = await this.appendWithRetry(seq, batch);
        const status = reply[0];
        if (status === 'ok' || status === 'limit') {
          const appended = Number(reply[1]);
          this.appended += appended;
          if (appended > 0) {
            this.last = { id: String(reply[2]), type: types[appended - 1], appended: this.appended };
            this.onFlushed(this.last);
          }
          if (status === 'limit') this.stop('limit');
        } else if (status === 'final' || status === 'stale') {
          this.stop(status);
        }
        // 'dup': an earlier try of this batch got through before its reply was lost.
        if (this.buffer.length / 2 < HIGH_WATER) this.releaseWaiters();
      }
    } finally {
      this.flushing = undefined;
      this.releaseWaiters();
    }
  }

  private async appendWithRetry(seq: number, batch: string[]): Promise<Array<string | number>> {
    for (let tries = 0; ; tries++) {
      try {
        return await this.scripts.appendEvents(this.metaKey, this.eventsKey, this.writer, seq, this.maxEvents, this.attempt, batch);
      } catch (error) {
        if (this.abandoned()) {
          this.logger.warn(`Dropping unflushed events of ${this.eventsKey}: shutting down while Redis fails (${(error as Error).message})`);
          return ['stale'];
        }
        if (tries % 20 === 0) this.logger.warn(`Appending events failed (${(error as Error).message}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** Math.min(tries, 5), 1000)));
      }
    }
  }

  private stop(reason: AppenderStop): void {
    if (this.stopped) return;
    this.stopped = reason;
    this.buffer = [];
    this.onStop(reason);
  }

  private releaseWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
