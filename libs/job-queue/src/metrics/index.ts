// `nestjs-job-streams/metrics`: needs `prom-client` (an optional peer dependency).
export { JobQueueMetricsModule } from './job-queue-metrics.module.js';
export { JobQueueMetrics, type JobQueueMetricsOptions } from './job-queue-metrics.js';
