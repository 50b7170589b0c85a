import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { JobQueue, JobQueueUnavailableError } from 'nestjs-job-streams';
import { Public } from './auth/public.decorator.js';

/** Liveness and backend reachability, for load balancers; needs no token. */
@Controller('health')
export class HealthController {
  constructor(@Inject(JobQueue) private readonly queue: JobQueue) {}

  @Get()
  @Public()
  async check(@Res() response: Response): Promise<void> {
    try {
      await this.queue.checkHealth();
      response.status(200).json({ status: 'ok', backend: this.queue.backend });
    } catch (error) {
      const message = error instanceof JobQueueUnavailableError ? error.message : 'The job queue backend is unavailable';
      response.status(503).setHeader('Retry-After', '1').json({ status: 'error', backend: this.queue.backend, message });
    }
  }
}
