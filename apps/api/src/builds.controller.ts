import { Body, Controller, Logger, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { BUILD_JOB, parseBuildRequest } from '@app/builds';
import { DEFAULT_QUEUE, JobAlreadyFinishedError, JobQueueError } from 'nestjs-job-streams';
import { Owner } from './auth/owner.decorator.js';
import { JobRoutes, deliveryOf } from './job-routes.js';

/** The demo build API: `@JobHandler` jobs. Start builds, read their state, follow and cancel them, from any instance. */
@Controller('builds')
export class BuildsController extends JobRoutes {
  protected readonly queueName = DEFAULT_QUEUE;
  private readonly logger = new Logger('BuildsController');

  /**
   * 202 `{ jobId }`; with `?delivery=direct`, 200 and the job's events as NDJSON in this response,
   * and the build is cancelled when the client disconnects before its terminal event.
   */
  @Post()
  async start(
    @Body() body: unknown,
    @Query('delivery') delivery: unknown,
    @Owner() owner: string,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    const direct = deliveryOf(delivery, ['direct']) === 'direct';
    const { input, abandonAfterMs } = parseBuildRequest(body);
    const job = await this.queue.enqueue(BUILD_JOB, input, { owner, abandonAfterMs });
    if (!direct) {
      response.status(202).location(`/builds/${job.id}`).json({ jobId: job.id });
      return;
    }
    response.setHeader('X-Job-Id', job.id);
    // A client that goes away before the terminal event abandons its build: it is cancelled,
    // wherever it runs. (A stream this instance ends itself, at shutdown, is finished, not abandoned.)
    let abandoned = false;
    response.once('close', () => (abandoned = !response.writableFinished));
    await this.streamer.ndjson(job.id, request, response, { owner });
    // (A client gone while the job was enqueued had its 'close' before the listener was there.)
    if (abandoned || (response.destroyed && !response.writableFinished)) await this.cancelAbandoned(job.id, owner);
  }

  private async cancelAbandoned(id: string, owner: string): Promise<void> {
    try {
      await this.queue.cancel(id, { owner, reason: 'client disconnected', cause: 'disconnect' });
    } catch (error) {
      // It ended meanwhile, or the backend is away (the build then runs to its end).
      if (!(error instanceof JobQueueError)) throw error;
      if (!(error instanceof JobAlreadyFinishedError)) this.logger.warn(`Could not cancel abandoned build ${id}: ${error.message}`);
    }
  }
}
