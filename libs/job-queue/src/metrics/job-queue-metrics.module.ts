import { Module, type DynamicModule } from '@nestjs/common';
import { JOB_QUEUE_METRICS_OPTIONS, JobQueueMetrics, type JobQueueMetricsOptions } from './job-queue-metrics.js';

/**
 * Registers the job queue's Prometheus metrics (see {@link JobQueueMetrics}) on the
 * application's `prom-client` registry. Import it next to `JobQueueModule`; serve the registry
 * from your own `/metrics` route (`registry.metrics()`, content type `registry.contentType`).
 *
 * @example
 * ```ts
 * imports: [JobQueueModule.forRoot({ backend: 'bullmq' }), JobQueueMetricsModule.forRoot()]
 * ```
 *
 * @publicApi
 */
@Module({})
export class JobQueueMetricsModule {
  static forRoot(options: JobQueueMetricsOptions = {}): DynamicModule {
    return {
      module: JobQueueMetricsModule,
      providers: [{ provide: JOB_QUEUE_METRICS_OPTIONS, useValue: options }, JobQueueMetrics],
      exports: [JobQueueMetrics],
    };
  }
}
