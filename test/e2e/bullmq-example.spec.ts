import { BULLMQ_EXAMPLE } from '../support/app-process.js';
import { describeDistributedReports } from '../support/distributed-reports.js';

// `apps/bullmq-example`, an app written as the @nestjs/bullmq docs show plus the lines this module
// adds: `POST /reports` is `@InjectQueue('reports')` and `queue.add` (no owner; the api reads with
// system access), the worker runs its own `@Processor('reports')` class extending `WorkerHost`.
describeDistributedReports('apps/bullmq-example (@InjectQueue, queue.add)', BULLMQ_EXAMPLE);
