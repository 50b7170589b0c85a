import type { Job } from 'bullmq';
import { paced } from '../support/clock.js';
import { EVENT_TYPE, tokenData, type TokenData } from '../support/payload.js';

/** The progress value both BullMQ contenders report: the same event the library would store. */
export interface ProgressValue {
  type: string;
  data: TokenData;
}

/**
 * A BullMQ processor as a team writes one: `n` `job.updateProgress` calls, each awaited, as fast
 * as it can (`burst`) or at `rate` per second (`paced`). Run on a plain `Worker` it is BullMQ
 * alone; on a `JobQueueWorker` it is the same processor bridged into the job's stream.
 */
export async function reportProgress(job: Job<{ n: number; rate?: number }>): Promise<null> {
  const progress = (i: number, readyAt?: number): Promise<void> =>
    job.updateProgress({ type: EVENT_TYPE, data: tokenData(i, readyAt) } satisfies ProgressValue);
  if (job.name === 'burst') for (let i = 0; i < job.data.n; i++) await progress(i);
  else if (job.name === 'paced') await paced(job.data.n, job.data.rate!, progress);
  return null;
}
