import { BadRequestException, Body, Controller, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { JobEventStreamer, JobQueue, type JobInfo } from 'nestjs-job-streams';
import type { ReportData } from './report.processor.js';

const reportData = z.strictObject({
  pages: z.int().min(1).max(1000).default(5),
  pageMs: z.int().min(0).max(60_000).default(200),
});

/** Jobs added with plain BullMQ have no owner: they are read with system access (no `owner` option). */
const REPORTS = { queue: 'reports' };

@Controller('reports')
export class ReportsController {
  constructor(
    @InjectQueue('reports') private readonly queue: Queue<ReportData>,
    private readonly jobs: JobQueue, // +
    private readonly streamer: JobEventStreamer, // +
  ) {}

  @Post()
  @HttpCode(202)
  async add(@Body() body: unknown): Promise<{ jobId: string }> {
    const data = reportData.safeParse(body ?? {}); // { pages 1..1000 = 5, pageMs 0..60000 = 200 }
    if (!data.success) throw new BadRequestException(z.prettifyError(data.error));
    const job = await this.queue.add('report', data.data);
    return { jobId: job.id! };
  }

  @Get(':id') // + state, attempt, result or error; 404 for an unknown id
  state(@Param('id') id: string): Promise<JobInfo> {
    return this.jobs.getJob(id, REPORTS);
  }

  @Get(':id/events') // + polling, or SSE / NDJSON resumable with Last-Event-ID, from any api instance
  async events(@Param('id') id: string, @Query() query: Record<string, unknown>, @Req() req: Request, @Res() res: Response) {
    if (query.delivery === 'polling') {
      res.json(await this.streamer.poll(id, req, { ...REPORTS, query }));
    } else if (query.delivery !== undefined && query.delivery !== 'streaming') {
      throw new BadRequestException('delivery must be one of polling, streaming');
    } else {
      const options = { ...REPORTS, after: query.after as string | undefined };
      const sse = /\btext\/event-stream\b/i.test(req.headers.accept ?? '');
      await (sse ? this.streamer.sse(id, req, res, options) : this.streamer.ndjson(id, req, res, options));
    }
  }
}
