import { Body, Controller, HttpCode, Post, Res } from '@nestjs/common';
import type { Response } from 'express';
import { REPORT_JOB, REPORTS_QUEUE, parseReportRequest } from '@app/builds';
import { Owner } from './auth/owner.decorator.js';
import { JobRoutes } from './job-routes.js';

/**
 * The demo report API: jobs of the `reports` BullMQ queue, run by a plain `@nestjs/bullmq`
 * processor, whose `updateProgress` and `log` calls are served as events like a build's.
 */
@Controller('reports')
export class ReportsController extends JobRoutes {
  protected readonly queueName = REPORTS_QUEUE;

  /**
   * 202 `{ jobId }`. `attempts` and `backoffMs` become the BullMQ job's options (a fixed backoff),
   * not part of its data.
   */
  @Post()
  @HttpCode(202)
  async start(@Body() body: unknown, @Owner() owner: string, @Res({ passthrough: true }) response: Response): Promise<{ jobId: string }> {
    const { input, attempts, backoffMs } = parseReportRequest(body);
    const job = await this.queue.enqueue(REPORT_JOB, input, { queue: REPORTS_QUEUE, owner, attempts, backoffMs });
    response.location(`/reports/${job.id}`);
    return { jobId: job.id };
  }
}
