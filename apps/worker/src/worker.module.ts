import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { BuildsModule, ReportsModule, ReportsQueueModule } from '@app/builds';
import { JobQueueModule, jobQueueOptionsFromEnv } from 'nestjs-job-streams';
import { JobQueueMetricsModule } from 'nestjs-job-streams/metrics';
import { MetricsServer } from './metrics-server.js';

/** A process that only runs jobs (`@JobHandler` builds, `@Processor` reports): no API (metrics on `METRICS_PORT` if set). */
@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true }),
    JobQueueModule.forRootAsync({
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({ ...jobQueueOptionsFromEnv(config), worker: true }),
    }),
    BuildsModule,
    ReportsQueueModule,
    ReportsModule,
    JobQueueMetricsModule.forRoot(),
  ],
  providers: [MetricsServer],
})
export class WorkerModule {}
