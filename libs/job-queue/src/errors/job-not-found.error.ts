import { JobQueueError } from './job-queue.error.js';

/** The job does not exist, has expired, or belongs to another owner (deliberately indistinguishable). */
export class JobNotFoundError extends JobQueueError {
  readonly code = 'JOB_NOT_FOUND';

  constructor(readonly jobId: string) {
    super(`Job ${JSON.stringify(jobId.length > 100 ? `${jobId.slice(0, 100)}…` : jobId)} was not found`);
  }
}
