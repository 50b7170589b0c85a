import type { JobQueueBackend } from './contract/job-queue-backend.js';
import type { JobHandlerRegistry } from './handlers/job-handler-registry.js';
import type { ProcessorRegistry } from './handlers/processor-registry.js';
import type { JobQueueMeter } from './metrics/job-queue-meter.js';
import type { ResolvedJobQueueOptions } from './options/job-queue-module-options.js';

/**
 * Makes the backend the options name, with its worker side. Backends are loaded on demand, so an
 * application on the in-memory backend never loads the Redis client.
 */
export async function createBackend(
  options: ResolvedJobQueueOptions,
  handlers: JobHandlerRegistry,
  processors: ProcessorRegistry,
  meter?: JobQueueMeter,
): Promise<JobQueueBackend> {
  switch (options.backend) {
    case 'memory': {
      const { MemoryBackend } = await import('./backends/memory/memory-backend.js');
      return new MemoryBackend(options, handlers, processors, meter);
    }
    case 'bullmq': {
      const [{ BullMqBackend }, { WorkerRuntime }] = await Promise.all([
        import('./backends/bullmq/bullmq-backend.js'),
        import('./worker/worker-runtime.js'),
      ]);
      return BullMqBackend.connect(options, handlers, processors, meter, (parts) => new WorkerRuntime(parts));
    }
  }
}
