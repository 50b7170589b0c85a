import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { JobQueue, JobQueueUnavailableError } from 'nestjs-job-streams';
import { Public } from './auth/public.decorator.js';

/** Half of a Kubernetes probe's default 1 s timeout, for each of the two reads. */
const HEALTH_TIMEOUT_MS = 400;

function unanswered(ms: number): Promise<never> {
  return new Promise((_, reject) => {
    setTimeout(() => reject(new JobQueueUnavailableError(`The job queue backend did not answer within ${ms} ms`)), ms).unref();
  });
}

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
      // Both reads answer within the probe's budget, even while Redis hangs (a stopped server
      // keeps the connection open and leaves commands unanswered until their 10 s timeout).
      await this.queue.checkHealth({ timeoutMs: HEALTH_TIMEOUT_MS });
      const circuitBreakers = await Promise.race([this.queue.circuitBreakers(), unanswered(HEALTH_TIMEOUT_MS)]);
      response.status(200).json({ status: 'ok', backend: this.queue.backend, details: { circuitBreakers } });
    } catch (error) {
      const message = error instanceof JobQueueUnavailableError ? error.message : 'The job queue backend is unavailable';
      response.status(503).setHeader('Retry-After', '1').json({ status: 'error', backend: this.queue.backend, message });
    }
  }
}
