import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import type { LoggerService } from '@nestjs/common';
import { createApiApp } from '../../src/create-api-app.js';

/** A demo API listening on a free loopback port. */
export interface ApiServer {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  readonly baseUrl: string;
  /** Closes the app as SIGTERM would; open streams must not hold it up. */
  close(): Promise<void>;
}

/** Variables the API reads at creation; every one not given is unset, so the caller's shell cannot leak in. */
const API_ENV = [
  'JOB_QUEUE_BACKEND',
  'JOB_QUEUE_WORKER',
  'WORKER_CONCURRENCY',
  'JOB_RETENTION_MS',
  'JOB_MAX_EVENTS',
  'JOB_MAX_EVENT_BYTES',
  'AUTH_TOKENS',
  'SSE_HEARTBEAT_MS',
  'REDIS_URL',
  'JOB_QUEUE_PREFIX',
  'JOB_SHUTDOWN_GRACE_MS',
  'JOB_LOCK_DURATION_MS',
  'JOB_NAMES',
  'JOB_QUEUES',
  'JOB_BRIDGE_FOREIGN_WORKERS',
  'JOB_CIRCUIT_BREAKER',
  'HTTP_HEADERS_TIMEOUT_MS',
  'HTTP_REQUEST_TIMEOUT_MS',
  'HTTP_KEEP_ALIVE_TIMEOUT_MS',
  'CORS_ORIGINS',
  'STREAM_TICKET_TTL_MS',
  'STREAM_TICKET_SECRET',
  'ADMIN_OWNERS',
] as const;

/**
 * Starts the API on the memory backend with `env` on top of the test defaults
 * (`SSE_HEARTBEAT_MS=100`; `JOB_SHUTDOWN_GRACE_MS=0` so that closing does not wait for the
 * minute-long steps some tests leave running), then restores `process.env` as it was.
 */
export async function startApiServer(
  env: Partial<Record<(typeof API_ENV)[number], string>> = {},
  options: { logger?: LoggerService } = {},
): Promise<ApiServer> {
  const saved = new Map(API_ENV.map((name) => [name, process.env[name]]));
  for (const name of API_ENV) delete process.env[name];
  Object.assign(process.env, { JOB_QUEUE_BACKEND: 'memory', SSE_HEARTBEAT_MS: '100', JOB_SHUTDOWN_GRACE_MS: '0' }, env);
  let app: Awaited<ReturnType<typeof createApiApp>> | undefined;
  try {
    app = await createApiApp({ logger: options.logger ?? false });
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    await app?.close();
    throw error;
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  const { port } = app.getHttpServer().address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: () => app.close(),
  };
}
