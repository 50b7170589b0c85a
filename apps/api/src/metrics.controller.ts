import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { JobQueueMetrics } from 'nestjs-job-streams/metrics';
import { Public } from './auth/public.decorator.js';

/**
 * Prometheus metrics of the job queue, in the text format, for a scraper; no token needed (like
 * `/health`): the metrics carry counts per queue, state and delivery, no job id or owner.
 */
@Controller('metrics')
export class MetricsController {
  constructor(@Inject(JobQueueMetrics) private readonly metrics: JobQueueMetrics) {}

  @Get()
  @Public()
  async scrape(@Res() response: Response): Promise<void> {
    const registry = this.metrics.registry;
    response
      .status(200)
      .setHeader('Content-Type', registry.contentType)
      .send(await registry.metrics());
  }
}
