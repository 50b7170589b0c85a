import { JobQueueError } from './job-queue.error.js';

/**
 * The job reached `maxEventsPerJob`. Its handler is aborted and the job fails with this message
 * (no retry): the cap is visible in the stream instead of silently dropping or trimming events.
 */
export class EventLimitExceededError extends JobQueueError {
  readonly code = 'EVENT_LIMIT_EXCEEDED';

  constructor(readonly limit: number) {
    super(`The job emitted more events than maxEventsPerJob (${limit}) allows`);
  }
}
