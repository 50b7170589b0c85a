/**
 * One event of a job's stream, identical on every instance that serves it.
 *
 * `id` is an opaque cursor, strictly increasing within the job: pass it back as `after` (or as
 * SSE `Last-Event-ID`) to resume right after this event. Compare cursors only through the queue.
 */
export interface JobEvent<TData = unknown> {
  id: string;
  type: string;
  data: TData;
  /** Milliseconds since the epoch at which the event was recorded. */
  ts: number;
  /**
   * The OpenTelemetry trace id (32 hex digits) of the context the job was enqueued in, on every
   * event of the job; absent when it was enqueued outside of a valid span context.
   */
  traceId?: string;
}

/** Types of the events that end a stream; exactly one of them is the last event of every job. */
export const TERMINAL_EVENT_TYPES = ['completed', 'failed', 'cancelled'] as const;

/** Event types the library writes itself; a handler cannot emit them. */
export const RESERVED_EVENT_TYPES = ['started', ...TERMINAL_EVENT_TYPES] as const;

export type TerminalEventType = (typeof TERMINAL_EVENT_TYPES)[number];

/** True for `completed`, `failed` and `cancelled`. */
export function isTerminalEventType(type: string): type is TerminalEventType {
  return (TERMINAL_EVENT_TYPES as readonly string[]).includes(type);
}

/** One page of events, as returned by {@link JobQueue.readEvents}. */
export interface JobEventPage {
  /** Events after the requested cursor, oldest first. */
  events: JobEvent[];
  /** Cursor for the next read: the id of the last returned event, else the cursor passed in. */
  next: string;
  /** True once the terminal event is in `events` or at/before the cursor passed in. */
  done: boolean;
}
