/**
 * One event of a job's stream, as the server sent it. `id` is an opaque cursor: the client sends
 * it back to resume right after this event, never compares or parses it.
 */
export interface JobStreamEvent<TData = unknown> {
  id: string;
  type: string;
  data: TData;
  /** When the event was recorded (epoch ms); absent over SSE, whose frames carry no time. */
  ts?: number;
}

/** Types of the events that end a stream: exactly one of them is the last event of every job. */
export const TERMINAL_TYPES: readonly string[] = ['completed', 'failed', 'cancelled'];
