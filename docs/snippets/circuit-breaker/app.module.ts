import { Module } from '@nestjs/common';
import { JobQueueModule } from 'nestjs-job-streams';

@Module({
  imports: [
    JobQueueModule.forRoot({
      backend: 'bullmq',
      // every job name (optional)
      circuitBreaker: { failures: 5, windowMs: 60_000, coolDownMs: 30_000 },
      // per job name: its own breaker, or false for none (optional)
      circuitBreakers: { build: { failures: 3, windowMs: 10_000, coolDownMs: 5_000 }, report: false },
    }),
  ],
})
export class AppModule {}
