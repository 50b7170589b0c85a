import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { BuildsModule, ReportsModule, ReportsQueueModule } from '@app/builds';
import { JobQueueModule, jobQueueOptionsFromEnv } from 'nestjs-job-streams';

/** A process that only runs jobs (`@JobHandler` builds, `@Processor` reports): no HTTP server. */
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
  ],
})
export class WorkerModule {}
