import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { LoggerService } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { NestFactory } from '@nestjs/core';
import { QueueBoard } from './admin/queue-board.js';
import { AppModule } from './app.module.js';
import { API_SETTINGS, type ApiSettings } from './api-settings.js';
import { hardenHttpServer } from './harden-http-server.js';
import { jsonBody } from './json-body.middleware.js';

/**
 * Keeps no connection alive once the server has stopped listening (shutdown): each one closes
 * as soon as its response is done. Node's `server.close()` closes only the connections idle at
 * that moment, then waits for the others and goes on serving requests that arrive on them; an
 * event stream ended at shutdown left its connection alive, so the client's reconnect went over
 * it to the dying instance (instead of to another one) and held its exit for seconds.
 */
function closeConnectionsOnShutdown(server: Server): void {
  // Ahead of the application's own listener, so the header is set before anything is written.
  server.prependListener('request', (_request: IncomingMessage, response: ServerResponse) => {
    if (!server.listening) response.setHeader('Connection', 'close');
    // Runs after Node's own 'finish' handling, which has released the connection by then.
    response.once('finish', () => {
      if (!server.listening) server.closeIdleConnections();
    });
  });
}

/** Builds the API application (not yet listening), as `main.ts` and the tests use it. */
export async function createApiApp(options: { logger?: false | LoggerService } = {}): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.register(), {
    bodyParser: false,
    abortOnError: false,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  app.disable('x-powered-by');
  const settings = app.get<ApiSettings>(API_SETTINGS);
  if (settings.corsOrigins.length) {
    // Exactly the listed origins (never a reflected one): the token is a header, not a cookie, so no credentials mode.
    app.enableCors({
      origin: settings.corsOrigins,
      methods: ['GET', 'POST'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Last-Event-ID', 'Accept'],
      exposedHeaders: ['X-Job-Id', 'Retry-After'],
      maxAge: 600,
    });
  }
  app.use(jsonBody);
  app.get(QueueBoard).mount(app.getHttpAdapter().getInstance());
  hardenHttpServer(app.getHttpServer() as Server, settings);
  closeConnectionsOnShutdown(app.getHttpServer() as Server);
  // On SIGTERM/SIGINT: run the shutdown hooks (open event streams end, the queue lets go of
  // Redis), then exit 0. Nest's default re-raises the signal, so a clean shutdown looked like
  // a death by signal (exit 143) to process managers and the fault tests.
  app.enableShutdownHooks([], { useProcessExit: true });
  return app;
}
