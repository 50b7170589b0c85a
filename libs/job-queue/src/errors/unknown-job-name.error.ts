import { JobQueueError } from './job-queue.error.js';

/** No handler is registered for the job name given to `enqueue`. */
export class UnknownJobNameError extends JobQueueError {
  readonly code = 'UNKNOWN_JOB_NAME';

  constructor(
    readonly jobName: string,
    readonly knownNames: readonly string[],
  ) {
    super(
      `No handler is registered for job name ${JSON.stringify(jobName)}` +
        (knownNames.length ? ` (known: ${knownNames.join(', ')})` : ' (no handlers are registered)'),
    );
  }
}
