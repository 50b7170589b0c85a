import { Job } from 'bullmq';
import type { StreamCalls } from '../backends/bullmq/stream-calls.js';

/**
 * The `Job` a {@link JobQueueWorker} hands its processor: BullMQ's own, whose `updateProgress` and
 * `log` also go to the job's event stream while an attempt of a bridged queue runs here. BullMQ's
 * call runs unchanged (same value, same errors, same result), so `job.progress`, the job's logs,
 * `QueueEvents` and dashboards see exactly what they would without the bridge. The worker's backend
 * runs BullMQ's script and the stream append as one script. Sandboxed processors are covered too:
 * BullMQ replays their calls on this parent-side job.
 */
export class BridgedJob<DataType = unknown, ReturnType = unknown, NameType extends string = string> extends Job<
  DataType,
  ReturnType,
  NameType
> {
  /**
   * Set by the bridge for the duration of an attempt run in this process (the worker's backend
   * sends each call as one script with BullMQ's): the calls made are counted until answered, so
   * the terminal event follows every one of them.
   */
  streamCalls?: StreamCalls;

  override updateProgress(progress: Parameters<Job['updateProgress']>[0]): Promise<void> {
    // BullMQ's write is started before anything else, so calls made without awaiting keep their order.
    const stored = super.updateProgress(progress);
    return this.streamCalls ? this.streamCalls.track(stored) : stored;
  }

  override log(logRow: string): Promise<number> {
    const stored = super.log(logRow);
    return this.streamCalls ? this.streamCalls.track(stored) : stored;
  }
}
