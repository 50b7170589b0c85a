import { setTimeout as sleep } from 'node:timers/promises';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import type { ReportInput } from './report-input.js';

/** The BullMQ queue of the demo reports. */
export const REPORTS_QUEUE = 'reports';
/** The BullMQ job name the demo api gives reports. */
export const REPORT_JOB = 'report';

/**
 * BullMQ's lock on a running report, from `JOB_LOCK_DURATION_MS` (default 7 s, the value the
 * apps check at start): the lock of a worker that died expires after this long, and the stalled
 * check, run as often but at least every 4 s, then hands the report to another worker.
 */
function lockDurationMs(): number {
  const value = Number(process.env.JOB_LOCK_DURATION_MS);
  return Number.isInteger(value) && value > 0 ? value : 7_000;
}

/**
 * The demo report, written as any `@nestjs/bullmq` processor is: it knows nothing of the job queue
 * module. Each page waits `pageMs` (stopping when the job is cancelled), reports its progress and
 * logs a line; `failAtPage` makes that page throw after both calls.
 */
@Processor(REPORTS_QUEUE, { lockDuration: lockDurationMs(), stalledInterval: Math.min(lockDurationMs(), 4000) })
export class ReportProcessor extends WorkerHost {
  async process(job: Job<ReportInput>, _token?: string, signal?: AbortSignal): Promise<{ pages: number }> {
    const { pages, pageMs, failAtPage } = job.data;
    for (let page = 1; page <= pages; page++) {
      if (pageMs > 0) await sleep(pageMs, undefined, { signal });
      signal?.throwIfAborted();
      await job.updateProgress({ page, pages });
      await job.log(`page ${page} of ${pages}`);
      if (page === failAtPage) throw new Error(`Report failed at page ${page}`);
    }
    return { pages };
  }
}
