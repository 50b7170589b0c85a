import { JobQueueError } from './job-queue.error.js';

/**
 * The backend's store is unreachable right now. Safe to retry after `retryAfterSeconds`; the
 * message never contains connection credentials.
 */
export class JobQueueUnavailableError extends JobQueueError {
  readonly code = 'JOB_QUEUE_UNAVAILABLE';

  constructor(
    message = 'The job queue backend is unavailable',
    readonly retryAfterSeconds = 1,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
