import { Job } from 'bullmq';

/** Where a bridged job's progress and log calls go. */
export interface ProgressSink {
  /** Called synchronously right after BullMQ's own write was sent, in call order. */
  record(type: 'progress' | 'log', data: unknown): void;
}

/**
 * The `Job` a {@link JobQueueWorker} hands its processor: BullMQ's own, whose `updateProgress` and
 * `log` also go to the job's event stream while an attempt of a bridged queue runs here. BullMQ's
 * call is sent first and runs unchanged (same value, same errors, same result), so `job.progress`,
 * the job's logs, `QueueEvents` and dashboards see exactly what they would without the bridge. The
 * event is appended alongside, without waiting for BullMQ's reply: one round trip per call, not two.
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
    this.progressSink?.record('progress', progress);
    return stored;
  }

  override log(logRow: string): Promise<number> {
    const stored = super.log(logRow);
    this.progressSink?.record('log', { message: logRow });
    return stored;
  }
}
