import { Inject, Injectable } from '@nestjs/common';
import { JobQueue, type FollowOptions, type JobAccessOptions } from '../contract/job-queue.js';
import type { JobEvent } from '../contract/job-event.js';
import type { JobInfo } from '../contract/job-info.js';

/** How long {@link JobQueueTesting} waits for a job's end unless told otherwise. */
const DEFAULT_END_TIMEOUT_MS = 5_000;

/** Which job to wait for, as `JobQueue` reads it, and for how long. */
export interface JobEndOptions extends JobAccessOptions {
  /** Give up after this long, in ms (5,000 unless set): the error names the job's state then. */
  timeoutMs?: number;
}

/**
 * What a test of an app that uses the module needs besides `JobQueue`: waiting for a job's end,
 * with its events, without polling. Provided by {@link JobQueueTestingModule}.
 *
 * @example
 * ```ts
 * const { id } = await controller.start();
 * const job = await moduleRef.get(JobQueueTesting).ended(id, { owner: 'alice' });
 * expect(job.state).toBe('completed');
 * ```
 *
 * @publicApi
 */
@Injectable()
export class JobQueueTesting {
  constructor(@Inject(JobQueue) private readonly jobQueue: JobQueue) {}

  /**
   * Every event of job `id` up to its terminal event (`completed`, `failed` or `cancelled`, the
   * last one), once the job ended.
   *
   * @throws Error when the job does not end within `timeoutMs`, naming its state then.
   * @throws JobNotFoundError as `JobQueue.follow` does.
   */
  async eventsUntilEnd(id: string, options: JobEndOptions = {}): Promise<JobEvent[]> {
    const { timeoutMs = DEFAULT_END_TIMEOUT_MS, ...access } = options;
    const signal = AbortSignal.timeout(timeoutMs);
    const events: JobEvent[] = [];
    const follow: FollowOptions = { ...access, signal };
    for await (const event of this.jobQueue.follow(id, follow)) events.push(event);
    if (signal.aborted) {
      const { state } = await this.jobQueue.getJob(id, access);
      throw new Error(`Job ${id} did not end within ${timeoutMs} ms (it is ${state}; ${events.length} event(s) so far)`);
    }
    return events;
  }

  /**
   * Job `id` once it ended, as `JobQueue.getJob` returns it (its state, result or error).
   *
   * @throws Error when the job does not end within `timeoutMs`, naming its state then.
   * @throws JobNotFoundError as `JobQueue.getJob` does.
   */
  async ended(id: string, options: JobEndOptions = {}): Promise<JobInfo> {
    const { timeoutMs, ...access } = options;
    await this.eventsUntilEnd(id, { ...access, timeoutMs });
    return this.jobQueue.getJob(id, access);
  }
}
