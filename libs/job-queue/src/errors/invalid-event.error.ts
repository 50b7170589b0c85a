import { JobQueueError } from './job-queue.error.js';

/**
 * Thrown by `emit` when an event cannot be stored: a reserved or malformed type, data that is not
 * JSON-serializable, or data larger than `maxEventBytes`. The stream is left untouched.
 */
export class InvalidEventError extends JobQueueError {
  readonly code = 'INVALID_EVENT';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}
