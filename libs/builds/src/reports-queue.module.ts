import { Module } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { BullModule } from '@nestjs/bullmq';
import { JobQueueWorker, bullModuleConnection } from 'nestjs-job-streams';
import { REPORTS_QUEUE } from './report.processor.js';

// The one line the bridge needs in an @nestjs/bullmq app: the workers @nestjs/bullmq makes for
// @Processor classes put every job's progress and log into the job's event stream. It must run
// before `registerQueue` is called (below, when this file is loaded).
BullModule.workerClass = JobQueueWorker;

/**
 * The demo's `@nestjs/bullmq` setup, as a team already has it: the shared connection (the same
 * `REDIS_URL` and `JOB_QUEUE_PREFIX` as the job queue module) and the `reports` queue. Imported on
 * the `bullmq` backend only; on `memory` the job queue module runs the processor itself.
 */
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [ConfigService],
      useFactory: async (config: ConfigService) => ({
        connection: await bullModuleConnection(config.get<string>('REDIS_URL') || 'redis://127.0.0.1:6379'),
        prefix: config.get<string>('JOB_QUEUE_PREFIX') || 'jq',
      }),
    }),
    BullModule.registerQueue({ name: REPORTS_QUEUE }),
  ],
})
export class ReportsQueueModule {}
