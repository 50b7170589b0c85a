import { JobQueueError } from './job-queue.error.js';

/** A parameter of a queue call is out of range or of the wrong type; the message names it and the rule. */
export class InvalidArgumentError extends JobQueueError {
  readonly code = 'INVALID_ARGUMENT';

  constructor(message: string) {
    super(message);
  }
}
