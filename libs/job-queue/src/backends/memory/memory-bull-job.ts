import { Job } from 'bullmq';

/** What the in-memory job reports its progress and log calls to. */
export interface MemoryBullJobSink {
  progress(value: unknown): void;
  log(line: string): void;
}

/**
 * The BullMQ `Job` a `@Processor` gets on the `memory` backend: the part processors commonly use
 * (`id`, `name`, `data`, `opts`, `attemptsMade`, `progress`, `updateProgress`, `log`,
 * `returnvalue`, `failedReason`, timestamps). Every other member of BullMQ's `Job` throws an error
 * naming it, instead of doing something subtly different from BullMQ.
 */
export class MemoryBullJob {
  progress: unknown = 0;
  returnvalue: unknown = null;
  failedReason?: string;
  finishedOn?: number;
  processedOn?: number;
  readonly queueName: string;
  private logCount = 0;

  private constructor(
    readonly id: string,
    readonly name: string,
    readonly data: unknown,
    readonly opts: { jobId: string; attempts: number; backoff?: { type: 'fixed'; delay: number }; priority?: number },
    readonly attemptsMade: number,
    readonly timestamp: number,
    queue: string,
    private readonly sink: MemoryBullJobSink,
  ) {
    this.queueName = queue;
    this.processedOn = Date.now();
  }

  /** A job for one attempt; members of BullMQ's `Job` it does not offer throw when used. */
  static create(
    fields: {
      id: string;
      name: string;
      data: unknown;
      attempts: number;
      /** Fixed delay before each retry (0: none, and no `opts.backoff`). */
      backoffMs?: number;
      priority?: number;
      attemptsMade: number;
      timestamp: number;
      queue: string;
    },
    sink: MemoryBullJobSink,
  ): MemoryBullJob {
    const job = new MemoryBullJob(
      fields.id,
      fields.name,
      fields.data,
      {
        jobId: fields.id,
        attempts: fields.attempts,
        ...(fields.backoffMs ? { backoff: { type: 'fixed' as const, delay: fields.backoffMs } } : {}),
        ...(fields.priority === undefined ? {} : { priority: fields.priority }),
      },
      fields.attemptsMade,
      fields.timestamp,
      fields.queue,
      sink,
    );
    return new Proxy(job, {
      get(target, property, receiver) {
        if (typeof property === 'string' && !(property in target) && property in Job.prototype) {
          return () => {
            throw new Error(`Job#${property} is not supported by the memory backend (JOB_QUEUE_BACKEND=memory); use bullmq`);
          };
        }
        return Reflect.get(target, property, receiver);
      },
    });
  }

  /**
   * Takes the value as BullMQ does: `job.progress` is the value given, and a value `JSON.stringify`
   * throws on is refused with that error; anything else appends a `progress` event (or a `gap`).
   */
  async updateProgress(progress: unknown): Promise<void> {
    this.progress = progress;
    JSON.stringify(progress);
    this.sink.progress(progress);
  }

  /** Appends a `log` event; resolves with the number of log lines, as BullMQ does. */
  async log(logRow: string): Promise<number> {
    this.sink.log(String(logRow));
    return ++this.logCount;
  }
}
