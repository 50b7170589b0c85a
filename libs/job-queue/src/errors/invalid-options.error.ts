import { JobQueueError } from './job-queue.error.js';

/** The module options failed validation at start; the message names each option and its rule. */
export class InvalidJobQueueOptionsError extends JobQueueError {
  readonly code = 'INVALID_OPTIONS';

  constructor(readonly problems: readonly string[]) {
    super(`Invalid JobQueueModule options:\n  - ${problems.join('\n  - ')}`);
  }
}
