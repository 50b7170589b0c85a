export { BuildsModule } from './builds.module.js';
export { BuildHandler, BUILD_JOB } from './build.handler.js';
export { parseBuildRequest, type BuildInput, type BuildRequest } from './build-input.js';
export { ReportsModule } from './reports.module.js';
export { ReportsQueueModule } from './reports-queue.module.js';
export { ReportProcessor, REPORTS_QUEUE, REPORT_JOB } from './report.processor.js';
export { parseReportRequest, type ReportInput, type ReportRequest } from './report-input.js';
