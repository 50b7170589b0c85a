import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { JobQueue, JobQueueUnavailableError } from 'nestjs-job-streams';
import { Public } from './auth/public.decorator.js';

/**
 * Liveness and backend reachability, for load balancers; needs no token. `details.circuitBreakers`
 * lists the job queue's circuit breakers and their shared state (an open breaker does not make
 * the service unhealthy: its jobs wait, the rest run).
 */
@Controller('health')
export class HealthController {
  constructor(@Inject(JobQueue) private readonly queue: JobQueue) {}

  @Get()
  @Public()
  async check(@Res() response: Response): Promise<void> {
    try {
      await this.queue.checkHealth();
      const circuitBreakers = await this.queue.circuitBreakers();
      response.status(200).json({ status: 'ok', backend: this.queue.backend, details: { circuitBreakers } });
    } catch (error) {
      const message = error instanceof JobQueueUnavailableError ? error.message : 'The job queue backend is unavailable';
      response.status(503).setHeader('Retry-After', '1').json({ status: 'error', backend: this.queue.backend, message });
    }
  }
}
