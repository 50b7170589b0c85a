import { Controller, Get, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule, type HealthCheckResult } from '@nestjs/terminus';
import { JobQueueHealthIndicator } from 'nestjs-job-streams/terminus';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly jobQueue: JobQueueHealthIndicator,
  ) {}

  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.jobQueue.isHealthy('jobQueue', { maxBridgeLagMs: 10_000 })]);
  }
}

/** Import it next to `JobQueueModule`. */
@Module({ imports: [TerminusModule.forRoot()], controllers: [HealthController], providers: [JobQueueHealthIndicator] })
export class HealthModule {}
