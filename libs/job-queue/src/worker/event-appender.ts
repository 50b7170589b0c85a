import { randomUUID } from 'node:crypto';
import type { Logger } from '@nestjs/common';
import type { AppendEventsReply, AppenderStop, JobScripts } from '../backends/bullmq/job-scripts.js';

const BATCH_EVENTS = 500;
/** Unflushed events above which `push` makes the producer wait (backpressure). */
const HIGH_WATER = 5000;
const RESOLVED = Promise.resolve();

/** The last event an appender got into the stream. */
export interface AppendedEvent {
  id: string;
  type: string;
  /** Events this appender has appended in all. */
  appended: number;
}

/** What an {@link EventAppender} writes to, and whom it tells. */
export interface EventAppenderOptions {
  scripts: JobScripts;
  metaKey: string;
  eventsKey: string;
  /** The attempt it writes for: the stream refuses it once a newer attempt started. */
  attempt: number;
  maxEvents: number;
  logger: Logger;
  /** Called once when the stream refuses further events. */
  onStop: (reason: AppenderStop) => void;
  /** Called after each batch that appended something. */
  onFlushed?: (last: AppendedEvent) => void;
  /** True once retrying is pointless (the process is shutting down past its grace period). */
  abandoned: () => boolean;
}

/**
 * Writes one attempt's events to the job's stream: in order, in batches (one script call per
 * batch, while the previous one is in flight the next one fills up), retried with the same
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
  /** The last appended event. */
  last?: AppendedEvent;
  private appended = 0;

  constructor(private readonly options: EventAppenderOptions) {}

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
        if (reply.status === 'ok' || reply.status === 'limit') {
          this.appended += reply.appended;
          if (reply.appended > 0) {
            this.last = { id: reply.lastId, type: types[reply.appended - 1], appended: this.appended };
            this.options.onFlushed?.(this.last);
          }
          if (reply.status === 'limit') this.stop('limit');
        } else if (reply.status === 'final' || reply.status === 'stale') {
          this.stop(reply.status);
        }
        // 'dup': an earlier try of this batch got through before its reply was lost.
        if (this.buffer.length / 2 < HIGH_WATER) this.releaseWaiters();
      }
    } finally {
      this.flushing = undefined;
      this.releaseWaiters();
    }
  }

  private async appendWithRetry(seq: number, batch: string[]): Promise<AppendEventsReply> {
    for (let tries = 0; ; tries++) {
      try {
        const { scripts, metaKey, eventsKey, maxEvents, attempt } = this.options;
        return await scripts.appendEvents(metaKey, eventsKey, this.writer, seq, maxEvents, attempt, batch);
      } catch (error) {
        if (this.options.abandoned()) {
          this.options.logger.warn(
            `Dropping unflushed events of ${this.options.eventsKey}: shutting down while Redis fails (${(error as Error).message})`,
          );
          return { status: 'stale' };
        }
        if (tries % 20 === 0) this.options.logger.warn(`Appending events failed (${(error as Error).message}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** Math.min(tries, 5), 1000)));
      }
    }
  }

  /**
   * Stops taking events because the stream refused them (`reason`): called by the appender itself,
   * and by whoever else wrote the attempt's events and got the refusal (a composed BullMQ call).
   */
  stop(reason: AppenderStop): void {
    if (this.stopped) return;
    this.stopped = reason;
    this.buffer = [];
    this.options.onStop(reason);
  }

  private releaseWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
