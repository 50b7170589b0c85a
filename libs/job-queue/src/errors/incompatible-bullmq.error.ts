import { JobQueueError } from './job-queue.error.js';

/**
 * The installed `bullmq` lacks a command the bridge composes with, or ships it in another shape
 * (other keys or arguments). Thrown at start-up, before any job runs: a bridge that guessed would
 * run unbridged, or corrupt BullMQ's own writes. Install a `bullmq` 6 release this package supports.
 */
export class IncompatibleBullMqError extends JobQueueError {
  readonly code = 'INCOMPATIBLE_BULLMQ';

  constructor(
    /** The installed `bullmq`'s version. */
    readonly bullmqVersion: string,
    /** The BullMQ command (script name) that is missing or has another shape. */
    readonly command: string,
    /** What is wrong with it. */
    readonly problem: string,
  ) {
    super(
      `bullmq ${bullmqVersion}: its "${command}" command ${problem}; nestjs-job-streams needs bullmq 6 with that command as 6.7 ships it`,
    );
  }
}
