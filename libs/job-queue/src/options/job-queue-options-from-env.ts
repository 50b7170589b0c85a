import type { CircuitBreakerOptions } from '../contract/circuit-breaker.js';
import { InvalidJobQueueOptionsError } from '../errors/invalid-options.error.js';
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

const BREAKER_FORMAT =
  'JOB_CIRCUIT_BREAKER must be "failures,windowMs,coolDownMs" (every job name) and/or "name=failures,windowMs,coolDownMs" or "name=off", separated by ";"';

/**
 * `JOB_CIRCUIT_BREAKER`: entries separated by `;`, each `failures,windowMs,coolDownMs` (the breaker
 * of every job name) or `<job name>=failures,windowMs,coolDownMs` or `<job name>=off`. The numbers'
 * ranges are checked by the module, naming the option.
 */
function circuitBreakers(value: string | undefined): Pick<JobQueueModuleOptions, 'circuitBreaker' | 'circuitBreakers'> {
  if (value === undefined || value.trim() === '') return {};
  let circuitBreaker: CircuitBreakerOptions | undefined;
  const perName: Record<string, CircuitBreakerOptions | false> = {};
  for (const entry of value.split(';').map((item) => item.trim())) {
    if (entry === '') continue;
    const equals = entry.indexOf('=');
    const name = equals === -1 ? undefined : entry.slice(0, equals).trim();
    const spec = (equals === -1 ? entry : entry.slice(equals + 1)).trim();
    if (name === '' || (name === undefined && circuitBreaker) || (name !== undefined && Object.hasOwn(perName, name))) {
      throw new InvalidJobQueueOptionsError([`${BREAKER_FORMAT} (got ${JSON.stringify(value)})`]);
    }
    if (name !== undefined && spec.toLowerCase() === 'off') {
      perName[name] = false;
      continue;
    }
    const numbers = spec.split(',').map((item) => item.trim());
    if (numbers.length !== 3 || numbers.some((item) => !/^[0-9]+$/.test(item))) {
      throw new InvalidJobQueueOptionsError([`${BREAKER_FORMAT} (got ${JSON.stringify(value)})`]);
    }
    const [failures, windowMs, coolDownMs] = numbers.map(Number);
    if (name === undefined) circuitBreaker = { failures, windowMs, coolDownMs };
    else perName[name] = { failures, windowMs, coolDownMs };
  }
  return { ...(circuitBreaker ? { circuitBreaker } : {}), ...(Object.keys(perName).length ? { circuitBreakers: perName } : {}) };
}

/**
 * Module options from the conventional environment variables, so switching backends is a matter
 * of configuration: `JOB_QUEUE_BACKEND` (memory|bullmq), `JOB_QUEUE_WORKER` (true|false),
 * `WORKER_CONCURRENCY`, `REDIS_URL`, `REDIS_CLUSTER_NODES` (comma-separated; or several URLs in
 * `REDIS_URL`), `REDIS_REPLICA_ACKS`, `REDIS_REPLICA_ACK_TIMEOUT_MS`, `REDIS_FAILOVER_TIMEOUT_MS`,
 * `JOB_QUEUE_PREFIX`, `JOB_RETENTION_MS`, `JOB_MAX_EVENTS`, `JOB_MAX_EVENT_BYTES`,
 * `JOB_SHUTDOWN_GRACE_MS`, `JOB_LOCK_DURATION_MS`, `JOB_NAMES` and `JOB_QUEUES` (comma-separated),
 * `JOB_BRIDGE_FOREIGN_WORKERS` (true|false), `JOB_CIRCUIT_BREAKER` (`failures,windowMs,coolDownMs`
 * for every job name, or `name=failures,windowMs,coolDownMs` / `name=off` entries separated by
 * `;`). Values are checked by the module at start.
 *
 * @throws InvalidJobQueueOptionsError when `JOB_CIRCUIT_BREAKER` is not in that format.
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
    ...circuitBreakers(get('JOB_CIRCUIT_BREAKER')),
    redis: {
      ...redisFromEnv(get('REDIS_URL'), get('REDIS_CLUSTER_NODES'), get('JOB_QUEUE_PREFIX')),
      replicaAcks: integer(get('REDIS_REPLICA_ACKS')),
      replicaAckTimeoutMs: integer(get('REDIS_REPLICA_ACK_TIMEOUT_MS')),
      failoverTimeoutMs: integer(get('REDIS_FAILOVER_TIMEOUT_MS')),
    },
  };
}

/** `REDIS_CLUSTER_NODES`, or a `REDIS_URL` of several comma-separated URLs, names Redis Cluster's nodes. */
function redisFromEnv(
  url: string | undefined,
  clusterNodes: string | undefined,
  prefix: string | undefined,
): JobQueueModuleOptions['redis'] {
  // Several URLs only when every comma-separated part is one (a comma may also sit in a password).
  const parts = url?.includes(',') ? list(url) : undefined;
  const nodes = list(clusterNodes) ?? (parts?.every((part) => /^rediss?:\/\//.test(part)) ? parts : undefined);
  if (nodes?.length) return { clusterNodes: nodes, prefix: prefix || undefined };
  return { url: url || undefined, prefix: prefix || undefined };
}
