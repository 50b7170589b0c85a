// `nestjs-job-streams/terminus`: needs `@nestjs/terminus` (an optional peer dependency).
export { JobQueueHealthIndicator, type JobQueueHealthOptions } from './job-queue.health-indicator.js';
