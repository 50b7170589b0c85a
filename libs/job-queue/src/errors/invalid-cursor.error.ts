import { JobQueueError } from './job-queue.error.js';

/** An event cursor (`after`, `Last-Event-ID`) that this backend could never have produced. */
export class InvalidCursorError extends JobQueueError {
  readonly code = 'INVALID_CURSOR';

  constructor(readonly cursor: string) {
    super(`Invalid event cursor ${JSON.stringify(cursor.length > 64 ? cursor.slice(0, 64) + '…' : cursor)}`);
  }
}
