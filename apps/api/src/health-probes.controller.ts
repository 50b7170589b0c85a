import { Controller, Get, Inject, Res, ServiceUnavailableException } from '@nestjs/common';
import { HealthCheckService, type HealthCheckResult, type HealthIndicatorFunction } from '@nestjs/terminus';
import type { Response } from 'express';
import { JobQueueHealthIndicator } from 'nestjs-job-streams/terminus';
import { Public } from './auth/public.decorator.js';

/**
 * Kubernetes-style probes built with `@nestjs/terminus`, next to the plain `GET /health`:
 * liveness says the process serves HTTP at all (a Redis outage must not get every api restarted:
 * they reconnect by themselves), readiness says it can serve jobs now (backend reachable,
 * foreign-worker bridges keeping up). Both answer with terminus' body (`{ status, info, error,
 * details }`): 200 when up, 503 with `Retry-After` when down. No token needed.
 */
@Controller('health')
export class HealthProbesController {
  constructor(
    @Inject(HealthCheckService) private readonly health: HealthCheckService,
    @Inject(JobQueueHealthIndicator) private readonly jobQueue: JobQueueHealthIndicator,
  ) {}

  @Get('live')
  @Public()
  live(@Res() response: Response): Promise<void> {
    return this.answer(response, []);
  }

  @Get('ready')
  @Public()
  ready(@Res() response: Response): Promise<void> {
    return this.answer(response, [() => this.jobQueue.isHealthy('jobQueue')]);
  }

  /** Terminus reports a failed check as a 503 exception; its body is the answer, not the API's error shape. */
  private async answer(response: Response, checks: HealthIndicatorFunction[]): Promise<void> {
    let result: HealthCheckResult;
    try {
      result = await this.health.check(checks);
    } catch (error) {
      if (!(error instanceof ServiceUnavailableException)) throw error;
      response.status(503).setHeader('Retry-After', '1').json(error.getResponse());
      return;
    }
    response.status(200).json(result);
  }
}
