import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { BuildsModule } from '@app/builds';
import { JobQueueModule, jobQueueOptionsFromEnv } from '@app/job-queue';

/** A process that only runs handlers: no HTTP server. */
@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true }),
    JobQueueModule.forRootAsync({
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({ ...jobQueueOptionsFromEnv(config), worker: true }),
    }),
    BuildsModule,
  ],
})
export class WorkerModule {}
