/** Where a stream was delivered: the HTTP helpers' three deliveries. */
export type DeliveryKind = 'polling' | 'sse' | 'ndjson';

/** What led to a cancel. */
export type CancelCause = 'request' | 'disconnect' | 'abandoned';

/**
 * What the library reports as it works, for a metrics implementation to count (see
 * `nestjs-job-streams/metrics`). Every method must be cheap and must not throw.
 *
 * @internal
 */
export interface JobQueueMeterSink {
  enqueued(queue: string): void;
  /** `events` events went into a job's stream in one write (a batch, or one lifecycle event). */
  appended(queue: string, events: number): void;
  /** A job's terminal event was written. */
  finished(queue: string, state: 'completed' | 'failed' | 'cancelled'): void;
  cancelled(cause: CancelCause): void;
  /** `events` events written to an HTTP client; `delayMs`: how long after it was recorded the last of them went out. */
  delivered(delivery: DeliveryKind, events: number, delayMs: number): void;
  streamOpened(delivery: DeliveryKind): void;
  streamClosed(delivery: DeliveryKind): void;
  redisError(connection: string): void;
  redisReconnect(connection: string): void;
}

/**
 * The hub between the library's parts and the metrics implementation, one per `JobQueueModule`:
 * the parts report to it; nothing is counted until a sink is attached.
 *
 * @internal
 */
export class JobQueueMeter {
  sink?: JobQueueMeterSink;
}
