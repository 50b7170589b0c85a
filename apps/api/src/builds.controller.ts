import { BadRequestException, Body, Controller, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { BUILD_JOB, parseBuildInput } from '@app/builds';
import { JobEventStreamer, JobQueue, type JobEventPage, type JobInfo } from '@app/job-queue';
import { Owner } from './auth/owner.decorator.js';
import { API_SETTINGS, type ApiSettings } from './api-settings.js';

function deliveryOf(value: unknown, allowed: readonly string[]): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !allowed.includes(value)) {
    throw new BadRequestException(`delivery must be one of ${allowed.join(', ')}`);
  }
  return value;
}

/** The demo build API: start builds, read their state, follow and cancel them, from any instance. */
@Controller('builds')
export class BuildsController {
  constructor(
    @Inject(JobQueue) private readonly queue: JobQueue,
    @Inject(JobEventStreamer) private readonly streamer: JobEventStreamer,
    @Inject(API_SETTINGS) private readonly settings: ApiSettings,
  ) {}

  /** 202 `{ jobId }`; with `?delivery=direct`, 200 and the job's events as NDJSON in this response. */
  @Post()
  async start(
    @Body() body: unknown,
    @Query('delivery') delivery: unknown,
    @Owner() owner: string,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    const direct = deliveryOf(delivery, ['direct']) === 'direct';
    const job = await this.queue.enqueue(BUILD_JOB, parseBuildInput(body), { owner });
    if (!direct) {
      response.status(202).location(`/builds/${job.id}`).json({ jobId: job.id });
      return;
    }
    response.setHeader('X-Job-Id', job.id);
    await this.streamer.ndjson(job.id, request, response, { owner });
  }

  @Get(':id')
  state(@Param('id') id: string, @Owner() owner: string): Promise<JobInfo> {
    return this.queue.getJob(id, { owner });
  }

  /**
   * `delivery=polling`: one page `{ events, next, done }` (long-poll with `waitMs`).
   * Otherwise a stream: SSE when the client accepts `text/event-stream`, else NDJSON.
   */
  @Get(':id/events')
  async events(
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
    @Owner() owner: string,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    const delivery = deliveryOf(query.delivery, ['polling', 'streaming']) ?? 'streaming';
    if (delivery === 'polling') {
      const page: JobEventPage = await this.streamer.poll(id, request, { owner, query });
      if (!response.destroyed) response.status(200).json(page);
      return;
    }
    if (query.after !== undefined && typeof query.after !== 'string') throw new BadRequestException('after must be a single event id');
    const options = { owner, after: query.after as string | undefined, heartbeatMs: this.settings.heartbeatMs };
    if (/\btext\/event-stream\b/i.test(request.headers.accept ?? '')) {
      await this.streamer.sse(id, request, response, options);
    } else {
      await this.streamer.ndjson(id, request, response, options);
    }
  }

  /** 202 `{ cancelled: true }`; 409 when the build has already ended. */
  @Post(':id/cancel')
  @HttpCode(202)
  async cancel(@Param('id') id: string, @Owner() owner: string): Promise<{ cancelled: true }> {
    await this.queue.cancel(id, { owner, reason: `cancelled by ${owner}` });
    return { cancelled: true };
  }
}
