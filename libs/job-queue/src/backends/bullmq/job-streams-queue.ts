import { Queue, type BackendFactory, type QueueOptions } from 'bullmq';
import { JobStreamsBackend, jobStreamsBackend } from './job-streams-backend.js';

/**
 * A drop-in BullMQ `Queue` whose `add` gives each job its event stream's metadata in the same
 * script as BullMQ's add: the job is `queued` and can be followed (with system access: it has no
 * owner) as soon as `add` returns, and no worker sees it without its metadata. Everything else is
 * BullMQ's `Queue`, unchanged. Jobs of `addBulk` and of flows get their metadata when first read
 * or started, as those of a plain `Queue` do.
 *
 * With `@nestjs/bullmq`, set it with the worker class, before the modules that register queues
 * are loaded: `BullModule.queueClass = JobStreamsQueue`; `@InjectQueue(name)` then gives one.
 *
 * @example
 * ```ts
 * const reports = new JobStreamsQueue('reports', { connection, prefix: 'jq' });
 * const job = await reports.add('report', { pages: 5 }); // followable now: GET /reports/:id/events
 * ```
 *
 * @publicApi
 */
export class JobStreamsQueue extends Queue {
  /**
   * As BullMQ's `Queue`. Without `backendFactory`, the queue's backend is made by
   * {@link jobStreamsBackend}; with a factory of the caller's that does not compose, its adds
   * are BullMQ's alone.
   *
   * @throws IncompatibleBullMqError when the installed `bullmq` lacks a command the backend
   * composes with, or ships it in another shape.
   */
  constructor(name: string, opts?: QueueOptions, backendFactory?: BackendFactory) {
    super(name, opts as QueueOptions, (backendFactory ?? jobStreamsBackend()) as BackendFactory<never>);
    JobStreamsBackend.of(this.getBackend())?.giveAddsMetadata(this.toKey(''));
  }
}
