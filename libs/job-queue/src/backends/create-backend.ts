import type { JobHandlerRegistry } from '../handlers/job-handler-registry.js';
import type { ProcessorRegistry } from '../handlers/processor-registry.js';
import type { JobQueue } from '../contract/job-queue.js';
import type { ResolvedJobQueueOptions } from '../options/job-queue-module-options.js';

/**
 * Picks the backend named by the options. Backends are loaded on demand, so an application on
 * the in-memory backend never loads the Redis client.
 */
export async function createJobQueue(
  options: ResolvedJobQueueOptions,
  handlers: JobHandlerRegistry,
  processors: ProcessorRegistry,
): Promise<JobQueue> {
  switch (options.backend) {
    case 'memory': {
      const { MemoryJobQueue } = await import('./memory/memory-job-queue.js');
      return new MemoryJobQueue(options, handlers, processors);
    }
    case 'bullmq': {
      const { BullMqJobQueue } = await import('./bullmq/bullmq-job-queue.js');
      return BullMqJobQueue.connect(options, handlers);
    }
  }
}
