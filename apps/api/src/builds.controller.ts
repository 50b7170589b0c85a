import { Body, Controller, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { BUILD_JOB, parseBuildInput } from '@app/builds';
import { DEFAULT_QUEUE } from 'nestjs-job-streams';
import { Owner } from './auth/owner.decorator.js';
import { JobRoutes, deliveryOf } from './job-routes.js';

/** The demo build API: `@JobHandler` jobs. Start builds, read their state, follow and cancel them, from any instance. */
@Controller('builds')
export class BuildsController extends JobRoutes {
  protected readonly queueName = DEFAULT_QUEUE;

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
}
