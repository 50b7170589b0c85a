import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { BuildsModule } from '@app/builds';
import { JobQueueExceptionFilter, JobQueueModule, jobQueueOptionsFromEnv } from '@app/job-queue';
import { API_SETTINGS, type ApiSettings } from './api-settings.js';
import { AuthTokens } from './auth/auth-tokens.js';
import { AUTH_TOKENS, TokenAuthGuard } from './auth/token-auth.guard.js';
import { BodyErrorInterceptor } from './body-error.interceptor.js';
import { BuildsController } from './builds.controller.js';
import { HealthController } from './health.controller.js';

function heartbeatMs(config: ConfigService): number {
  const raw = config.get<string>('SSE_HEARTBEAT_MS') ?? '15000';
  const value = Number(raw);
  if (!/^[0-9]+$/.test(raw) || value < 100 || value > 300_000) throw new Error('SSE_HEARTBEAT_MS must be an integer from 100 to 300000');
  return value;
}

/** The demo build API. */
@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true }),
    JobQueueModule.forRootAsync({ inject: [ConfigService], useFactory: jobQueueOptionsFromEnv }),
    BuildsModule,
  ],
  controllers: [BuildsController, HealthController],
  providers: [
    { provide: AUTH_TOKENS, inject: [ConfigService], useFactory: (config: ConfigService) => AuthTokens.parse(config.get('AUTH_TOKENS')) },
    {
      provide: API_SETTINGS,
      inject: [ConfigService],
      useFactory: (config: ConfigService): ApiSettings => ({ heartbeatMs: heartbeatMs(config) }),
    },
    { provide: APP_GUARD, useClass: TokenAuthGuard },
    { provide: APP_INTERCEPTOR, useClass: BodyErrorInterceptor },
    { provide: APP_FILTER, useClass: JobQueueExceptionFilter },
  ],
})
export class AppModule {}
