import { DEMO_APPS } from '../support/app-process.js';
import { describeDistributedReports } from '../support/distributed-reports.js';

// The demo apps (`apps/api`, `apps/worker`): `POST /reports` enqueues through `JobQueue.enqueue`
// with the caller as owner; the worker runs the demo's `ReportProcessor`.
describeDistributedReports('the demo apps', DEMO_APPS);
