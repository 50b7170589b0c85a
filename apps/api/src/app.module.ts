import { Module, type DynamicModule } from '@nestjs/common';
import { ConditionalModule, ConfigModule, ConfigService } from '@nestjs/config';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { Registry } from 'prom-client';
import { BuildsModule, ReportsModule, ReportsQueueModule } from '@app/builds';
import { JobQueueExceptionFilter, JobQueueModule, jobQueueOptionsFromEnv } from 'nestjs-job-streams';
import { JobQueueMetricsModule } from 'nestjs-job-streams/metrics';
import { JobQueueHealthIndicator } from 'nestjs-job-streams/terminus';
import { QueueBoard } from './admin/queue-board.js';
import { API_SETTINGS, apiSettingsFromEnv, type ApiSettings } from './api-settings.js';
import { AuthTokens } from './auth/auth-tokens.js';
import { StreamTickets } from './auth/stream-tickets.js';
import { AUTH_TOKENS, TokenAuthGuard } from './auth/token-auth.guard.js';
import { BodyErrorInterceptor } from './body-error.interceptor.js';
import { BuildsController } from './builds.controller.js';
import { HealthController } from './health.controller.js';
import { HealthProbesController } from './health-probes.controller.js';
import { LivePageController } from './live-page.controller.js';
import { MetricsController } from './metrics.controller.js';
import { HttpErrorFilter } from './http-error.filter.js';
import { ReportsController } from './reports.controller.js';

/** `JOB_QUEUE_WORKER` as the job queue module reads it: false for false, 0 and no. */
function isFalse(value: string | undefined): boolean {
  return ['false', '0', 'no'].includes((value ?? '').trim().toLowerCase());
}

/**
 * The demo API (builds and reports). Built per application by {@link AppModule.register}: the
 * backend-dependent imports are decided from the environment of the application being created
 * (an import-time decision would hold for every later application in the same process).
 */
@Module({})
export class AppModule {
  static register(): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot({ isGlobal: true }),
        JobQueueModule.forRootAsync({ inject: [ConfigService], useFactory: jobQueueOptionsFromEnv }),
        TerminusModule.forRoot(),
        // Each application its own registry: several apps in one process (tests) must not share metrics.
        JobQueueMetricsModule.forRoot({ registry: new Registry() }),
        BuildsModule,
        // The @nestjs/bullmq setup exists on the bullmq backend only: on memory, no Redis is needed
        // and the job queue module runs the report processor itself.
        ConditionalModule.registerWhen(ReportsQueueModule, (env) => env.JOB_QUEUE_BACKEND === 'bullmq', { debug: false }),
        // An api-only instance (JOB_QUEUE_WORKER=false) runs no processor: its workers do.
        ConditionalModule.registerWhen(ReportsModule, (env) => env.JOB_QUEUE_BACKEND !== 'bullmq' || !isFalse(env.JOB_QUEUE_WORKER), {
          debug: false,
        }),
      ],
      controllers: [BuildsController, ReportsController, HealthController, HealthProbesController, LivePageController, MetricsController],
      providers: [
        JobQueueHealthIndicator,
        QueueBoard,
        {
          provide: AUTH_TOKENS,
          inject: [ConfigService],
          useFactory: (config: ConfigService) => AuthTokens.parse(config.get('AUTH_TOKENS')),
        },
        { provide: API_SETTINGS, inject: [ConfigService], useFactory: apiSettingsFromEnv },
        {
          provide: StreamTickets,
          inject: [ConfigService, API_SETTINGS, AUTH_TOKENS],
          useFactory: (config: ConfigService, settings: ApiSettings, tokens: AuthTokens | undefined) =>
            StreamTickets.create(config.get('STREAM_TICKET_SECRET'), tokens, settings.streamTicketTtlMs),
        },
        { provide: APP_GUARD, useClass: TokenAuthGuard },
        { provide: APP_INTERCEPTOR, useClass: BodyErrorInterceptor },
        { provide: APP_FILTER, useClass: JobQueueExceptionFilter },
        { provide: APP_FILTER, useClass: HttpErrorFilter },
      ],
    };
  }
}
