import { JobQueueError } from './job-queue.error.js';

/** `enqueue` named a queue this job queue does not bridge. */
export class UnknownQueueError extends JobQueueError {
  readonly code = 'UNKNOWN_QUEUE';

  constructor(
    readonly queueName: string,
    readonly knownQueues: readonly string[],
  ) {
    super(
      `Queue ${JSON.stringify(queueName.length > 64 ? queueName.slice(0, 64) + '…' : queueName)} is not bridged` +
        (knownQueues.length ? ` (bridged: ${knownQueues.join(', ')})` : ''),
    );
  }
}
