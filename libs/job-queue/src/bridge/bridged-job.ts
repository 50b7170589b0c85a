import { Job } from 'bullmq';

/** Where a bridged job's progress and log calls go once BullMQ has stored them. */
export interface ProgressSink {
  /** Called synchronously with BullMQ's own write, in call order; appends after `stored` resolves. */
  record(stored: Promise<unknown>, type: 'progress' | 'log', data: unknown): void;
}

/**
 * The `Job` a {@link JobQueueWorker} hands its processor: BullMQ's own, whose `updateProgress` and
 * `log` also go to the job's event stream while an attempt of a bridged queue runs here. BullMQ's
 * call runs first and unchanged (same value, same errors, same result), so `job.progress`, the
 * job's logs, `QueueEvents` and dashboards see exactly what they would without the bridge.
 * Sandboxed processors are covered too: BullMQ replays their calls on this parent-side job.
 */
export class BridgedJob<DataType = unknown, ReturnType = unknown, NameType extends string = string> extends Job<
  DataType,
  ReturnType,
  NameType
> {
  /** Set by the bridge for the duration of an attempt run in this process. */
  progressSink?: ProgressSink;

  override updateProgress(progress: Parameters<Job['updateProgress']>[0]): Promise<void> {
    // BullMQ's write is started before anything else, so calls made without awaiting keep their order.
    const stored = super.updateProgress(progress);
    this.progressSink?.record(stored, 'progress', progress);
    return stored;
  }

  override log(logRow: string): Promise<number> {
    const stored = super.log(logRow);
    this.progressSink?.record(stored, 'log', { message: logRow });
    return stored;
  }
}
