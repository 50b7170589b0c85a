import { setTimeout as sleep } from 'node:timers/promises';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';

export interface ReportData {
  pages: number;
  pageMs: number;
}

/** BullMQ's lock on a running report: the report of a worker that died runs again elsewhere after about this long. */
const lockDuration = Number(process.env.JOB_LOCK_DURATION_MS) || 30_000;

/** A plain @nestjs/bullmq processor: it knows nothing of nestjs-job-streams. */
@Processor('reports', { lockDuration, stalledInterval: lockDuration })
export class ReportProcessor extends WorkerHost {
  async process(job: Job<ReportData>, _token?: string, signal?: AbortSignal): Promise<{ pages: number }> {
    const { pages, pageMs } = job.data;
    for (let page = 1; page <= pages; page++) {
      await sleep(pageMs, undefined, { signal }); // rejects when the job is cancelled
      await job.updateProgress({ page, pages });
      await job.log(`page ${page} of ${pages}`);
    }
    return { pages };
  }
}
