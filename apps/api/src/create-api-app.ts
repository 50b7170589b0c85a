import type { NestExpressApplication } from '@nestjs/platform-express';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { jsonBody } from './json-body.middleware.js';

/** Builds the API application (not yet listening), as `main.ts` and the tests use it. */
export async function createApiApp(options: { logger?: false } = {}): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule, {
    bodyParser: false,
    abortOnError: false,
    ...(options.logger === false ? { logger: false } : {}),
  });
  app.disable('x-powered-by');
  app.use(jsonBody);
  // On SIGTERM/SIGINT: run the shutdown hooks (open event streams end, the queue lets go of
  // Redis), then exit 0. Nest's default re-raises the signal, so a clean shutdown looked like
  // a death by signal (exit 143) to process managers and the fault tests.
  app.enableShutdownHooks([], { useProcessExit: true });
  return app;
}
