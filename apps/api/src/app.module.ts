import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { BuildsModule } from '@app/builds';
import { JobQueueExceptionFilter, JobQueueModule, jobQueueOptionsFromEnv } from '@app/job-queue';
import { API_SETTINGS, apiSettingsFromEnv } from './api-settings.js';
import { AuthTokens } from './auth/auth-tokens.js';
import { AUTH_TOKENS, TokenAuthGuard } from './auth/token-auth.guard.js';
import { BodyErrorInterceptor } from './body-error.interceptor.js';
import { BuildsController } from './builds.controller.js';
import { HealthController } from './health.controller.js';
import { HttpErrorFilter } from './http-error.filter.js';

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
    { provide: API_SETTINGS, inject: [ConfigService], useFactory: apiSettingsFromEnv },
    { provide: APP_GUARD, useClass: TokenAuthGuard },
    { provide: APP_INTERCEPTOR, useClass: BodyErrorInterceptor },
    { provide: APP_FILTER, useClass: JobQueueExceptionFilter },
    { provide: APP_FILTER, useClass: HttpErrorFilter },
  ],
})
export class AppModule {}
