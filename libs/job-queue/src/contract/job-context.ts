/**
 * What a handler receives for one attempt of one job.
 *
 * @typeParam TData - the job's input data (JSON; it went through serialization on the way in).
 */
export interface JobContext<TData = unknown> {
  /** The job's id, the same the client sees. */
  readonly id: string;
  /** The job name the handler is registered for. */
  readonly name: string;
  readonly data: TData;
  /** 1 on the first attempt, then 2, 3, ... on retries. */
  readonly attempt: number;
  /**
   * Fires when the job is cancelled (from any instance), when it hits its event cap, or when the
   * worker shuts down. Pass it to anything that accepts a signal and stop promptly when it fires.
   */
  readonly signal: AbortSignal;
  /**
   * Appends an event to the job's stream. Returns at once (the event is stored in order with the
   * others); `data` must be JSON-serializable and within `maxEventBytes`, and `type` must not be a
   * reserved lifecycle type, or an {@link InvalidEventError} is thrown. After the job was
   * cancelled, events are ignored.
   *
   * The returned promise resolves when the backend accepted the event; awaiting it is optional and
   * is how a very fast producer applies backpressure.
   */
  emit(type: string, data?: unknown): Promise<void>;
}

/** A job handler: its resolved value becomes the `completed` event's `result`. */
export type JobHandlerFn<TData = unknown, TResult = unknown> = (context: JobContext<TData>) => Promise<TResult> | TResult;
