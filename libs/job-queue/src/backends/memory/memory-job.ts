import type { JobEvent } from '../../contract/job-event.js';
import type { JobInfo, JobState } from '../../contract/job-info.js';
import type { EventLimitExceededError } from '../../errors/event-limit-exceeded.error.js';
import { traceIdOf, tracedFinish, type TraceCarrier } from '../../tracing/job-tracing.js';

/** One job of the in-memory backend, with its events. */
export class MemoryJob {
  state: JobState = 'queued';
  attempt = 0;
  startedAt?: number;
  finishedAt?: number;
  result?: unknown;
  error?: { message: string };
  readonly events: JobEvent[] = [];
  /** Sequence number (= cursor) of the terminal event, once written. */
  terminalSeq?: number;
  /** Wakes long-poll readers on the next event. */
  readonly waiters = new Set<() => void>();
  /** Aborts the running attempt; replaced on each attempt. */
  abort?: AbortController;
  expiry?: NodeJS.Timeout;
  /** Set when the running attempt reached the event cap: the job fails with it. */
  limitError?: EventLimitExceededError;
  /** With `abandonAfterMs`: when a client last read the job, and the check that cancels it when unread. */
  readAt = 0;
  watchdog?: NodeJS.Timeout;
  /** With `backoffMs`: the wait before the next attempt is queued. */
  retryTimer?: NodeJS.Timeout;

  constructor(
    /** The BullMQ queue name it belongs to (ids are unique per queue). */
    readonly queue: string,
    readonly id: string,
    readonly name: string,
    readonly owner: string,
    readonly data: unknown,
    readonly maxAttempts: number,
    readonly priority: number | undefined,
    readonly createdAt: number,
    readonly abandonAfterMs?: number,
    /** The trace context the job was enqueued in, when it was. */
    readonly trace?: TraceCarrier,
    /** Fixed delay before each retry, in ms (0: at once). */
    readonly backoffMs = 0,
  ) {
    this.readAt = createdAt;
    this.traceId = traceIdOf(trace?.traceparent);
  }

  /** The trace id every event of the job carries, when it was enqueued in a trace. */
  readonly traceId?: string;

  /** True once the job reached a final state (its terminal event is written). */
  get final(): boolean {
    return this.terminalSeq !== undefined;
  }

  append(type: string, data: unknown): JobEvent {
    const event: JobEvent = { id: String(this.events.length + 1), type, data, ts: Date.now() };
    if (this.traceId !== undefined) event.traceId = this.traceId;
    this.events.push(event);
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    return event;
  }

  /** Ends the job: its final state, and the terminal event of the same name (in a `finish` span). */
  writeTerminal(state: 'completed' | 'failed' | 'cancelled', data: unknown): void {
    tracedFinish({ system: 'memory', queue: this.queue, name: this.name, id: this.id, attempt: this.attempt || undefined, state }, () => {
      this.state = state;
      this.finishedAt = Date.now();
      this.terminalSeq = this.events.length + 1;
      this.append(state, data);
    });
  }

  info(): JobInfo {
    const info: JobInfo = {
      id: this.id,
      name: this.name,
      state: this.state,
      attempt: this.attempt,
      maxAttempts: this.maxAttempts,
      createdAt: this.createdAt,
    };
    if (this.startedAt !== undefined) info.startedAt = this.startedAt;
    if (this.finishedAt !== undefined) info.finishedAt = this.finishedAt;
    if (this.state === 'completed') info.result = this.result;
    if (this.error) info.error = this.error;
    return info;
  }
}
