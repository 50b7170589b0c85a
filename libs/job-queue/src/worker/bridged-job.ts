import { Job } from 'bullmq';
import type { StreamCalls } from '../backends/bullmq/stream-calls.js';

/** Where a bridged job's progress and log calls go. */
export interface ProgressSink {
  /** Called synchronously right after BullMQ's own write was sent, in call order. */
  record(type: 'progress' | 'log', data: unknown): void;
}

/**
 * The `Job` a {@link JobQueueWorker} hands its processor: BullMQ's own, whose `updateProgress` and
 * `log` also go to the job's event stream while an attempt of a bridged queue runs here. BullMQ's
 * call runs unchanged (same value, same errors, same result), so `job.progress`, the job's logs,
 * `QueueEvents` and dashboards see exactly what they would without the bridge. On one Redis server
 * the worker's backend runs BullMQ's script and the stream append as one script; on Redis Cluster
 * the event is appended alongside, without waiting for BullMQ's reply. Sandboxed processors are
 * covered too: BullMQ replays their calls on this parent-side job.
 */
export class BridgedJob<DataType = unknown, ReturnType = unknown, NameType extends string = string> extends Job<
  DataType,
  ReturnType,
  NameType
> {
  /** Set by the bridge for the duration of an attempt run in this process, when its calls are sent next to BullMQ's. */
  progressSink?: ProgressSink;
  /**
   * Set by the bridge for the duration of an attempt run in this process, when the worker's
   * {@link JobStreamsBackend} sends each call as one script with BullMQ's: the calls made are
   * counted until answered, so the terminal event follows every one of them.
   */
  streamCalls?: StreamCalls;

  override updateProgress(progress: Parameters<Job['updateProgress']>[0]): Promise<void> {
    // BullMQ's write is started before anything else, so calls made without awaiting keep their order.
    const stored = super.updateProgress(progress);
    this.progressSink?.record('progress', progress);
    return this.streamCalls ? this.streamCalls.track(stored) : stored;
  }

  override log(logRow: string): Promise<number> {
    const stored = super.log(logRow);
    this.progressSink?.record('log', { message: logRow });
    return this.streamCalls ? this.streamCalls.track(stored) : stored;
  }
}
