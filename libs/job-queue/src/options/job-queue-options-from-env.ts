import type { JobQueueModuleOptions } from './job-queue-module-options.js';

/** Anything with a `get(key)`, such as `@nestjs/config`'s `ConfigService` or `process.env` wrapped. */
export interface ConfigReader {
  get<T = string>(key: string): T | undefined;
}

function integer(value: string | undefined): number | undefined {
  // Left as the raw text when not a clean integer, so validation reports it with the option's name.
  if (value === undefined || value === '') return undefined;
  return /^-?[0-9]+$/.test(value.trim()) ? Number(value) : (value as unknown as number);
}

function list(value: string | undefined): string[] | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function boolean(value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  const normalized = value.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(normalized)) return true;
  if (['false', '0', 'no'].includes(normalized)) return false;
  return value as unknown as boolean;
}

/**
 * Module options from the conventional environment variables, so switching backends is a matter
 * of configuration: `JOB_QUEUE_BACKEND` (memory|bullmq), `JOB_QUEUE_WORKER` (true|false),
 * `WORKER_CONCURRENCY`, `REDIS_URL`, `JOB_QUEUE_PREFIX`, `JOB_RETENTION_MS`,
 * `JOB_MAX_EVENTS`, `JOB_MAX_EVENT_BYTES`, `JOB_SHUTDOWN_GRACE_MS`, `JOB_LOCK_DURATION_MS`,
 * `JOB_NAMES` and `JOB_QUEUES` (comma-separated), `JOB_BRIDGE_FOREIGN_WORKERS` (true|false). Values are checked by the module at start.
 *
 * @example
 * ```ts
 * JobQueueModule.forRootAsync({ inject: [ConfigService], useFactory: jobQueueOptionsFromEnv })
 * ```
 */
export function jobQueueOptionsFromEnv(config: ConfigReader): JobQueueModuleOptions {
  const get = (key: string): string | undefined => config.get<string>(key);
  return {
    backend: (get('JOB_QUEUE_BACKEND') || 'memory') as JobQueueModuleOptions['backend'],
    worker: boolean(get('JOB_QUEUE_WORKER')),
    concurrency: integer(get('WORKER_CONCURRENCY')),
    retentionMs: integer(get('JOB_RETENTION_MS')),
    maxEventsPerJob: integer(get('JOB_MAX_EVENTS')),
    maxEventBytes: integer(get('JOB_MAX_EVENT_BYTES')),
    shutdownGraceMs: integer(get('JOB_SHUTDOWN_GRACE_MS')),
    lockDurationMs: integer(get('JOB_LOCK_DURATION_MS')),
    jobNames: list(get('JOB_NAMES')),
    queues: list(get('JOB_QUEUES')),
    bridgeForeignWorkers: boolean(get('JOB_BRIDGE_FOREIGN_WORKERS')),
    redis: { url: get('REDIS_URL') || undefined, prefix: get('JOB_QUEUE_PREFIX') || undefined },
  };
}
