import { JobQueueError } from './job-queue.error.js';

/** The operation (for example cancel) needs a job that has not ended yet. */
export class JobAlreadyFinishedError extends JobQueueError {
  readonly code = 'JOB_ALREADY_FINISHED';

  constructor(
    readonly jobId: string,
    readonly state: string,
  ) {
    super(`Job ${JSON.stringify(jobId)} has already ended (${state})`);
  }
}
