import { Module, type DynamicModule } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { APP_FILTER } from '@nestjs/core';
import { BullModule } from '@nestjs/bullmq';
import { JobQueueExceptionFilter, JobQueueModule, JobQueueWorker, JobStreamsQueue, bullModuleConnection } from 'nestjs-job-streams';
import { ReportProcessor } from './report.processor.js';
import { ReportsController } from './reports.controller.js';

BullModule.workerClass = JobQueueWorker; // + before any registerQueue runs: @nestjs/bullmq's workers now bridge
BullModule.queueClass = JobStreamsQueue; // + and @InjectQueue's adds give each job its stream at once

/** One module for both roles: an `api` serves HTTP and runs no processor; a `worker` runs the processor and serves nothing. */
@Module({})
export class AppModule {
  static forRole(role: 'api' | 'worker'): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot({ isGlobal: true }),
        BullModule.forRootAsync({
          inject: [ConfigService],
          useFactory: async (config: ConfigService) => ({
            // + checks REDIS_URL once (fails fast, password redacted) so one variable configures both modules
            connection: await bullModuleConnection(config.get('REDIS_URL', 'redis://127.0.0.1:6379')),
            prefix: config.get('JOB_QUEUE_PREFIX', 'jq'),
          }),
        }),
        BullModule.registerQueue({ name: 'reports' }),
        // + Redis URL and key prefix come from BullModule.forRoot; workers bridge, apis only read
        JobQueueModule.forRoot({ backend: 'bullmq', worker: role === 'worker' }),
      ],
      controllers: role === 'api' ? [ReportsController] : [],
      providers:
        role === 'api'
          ? [{ provide: APP_FILTER, useClass: JobQueueExceptionFilter }] // + 404, 400, 409, 503 with Retry-After
          : [ReportProcessor],
    };
  }
}
