import { CIRCUIT_BREAKER_RULES, type CircuitBreakerOptions } from '../contract/circuit-breaker.js';
import { carriesHashTag } from '../backends/bullmq/redis-keys.js';
import { InvalidJobQueueOptionsError } from '../errors/invalid-options.error.js';
import { DEFAULT_FAILOVER_TIMEOUT_MS, failoverTimeoutProblem } from './failover-timeout.js';
import { JOB_QUEUE_BACKENDS, type ResolvedJobQueueOptions } from './job-queue-module-options.js';

/** The value of each option left unset. */
export const JOB_QUEUE_DEFAULTS = {
  worker: true,
  concurrency: 10,
  retentionMs: 60 * 60 * 1000,
  maxEventsPerJob: 100_000,
  maxEventBytes: 64 * 1024,
  defaultAttempts: 1,
  shutdownGraceMs: 10_000,
  lockDurationMs: 7_000,
  redisUrl: 'redis://127.0.0.1:6379',
  prefix: 'jq',
} as const;

const INTEGER_RULES: Record<
  'concurrency' | 'retentionMs' | 'maxEventsPerJob' | 'maxEventBytes' | 'defaultAttempts' | 'shutdownGraceMs' | 'lockDurationMs',
  [number, number]
> = {
  concurrency: [1, 1000],
  retentionMs: [1000, 30 * 24 * 60 * 60 * 1000],
  maxEventsPerJob: [10, 10_000_000],
  maxEventBytes: [256, 16 * 1024 * 1024],
  defaultAttempts: [1, 100],
  shutdownGraceMs: [0, 60 * 60 * 1000],
  lockDurationMs: [1000, 10 * 60 * 1000],
};

/**
 * What a BullMQ queue name may be here (it becomes part of Redis keys): braces included, for a
 * queue name that carries its own Redis Cluster hash tag (`{reports}`).
 */
export const QUEUE_NAME = /^[A-Za-z0-9_.{}-]{1,64}$/;

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Checks one breaker's options (`label` names it in messages); the breaker, or undefined after a problem. */
function checkCircuitBreaker(value: unknown, label: string, problems: string[]): CircuitBreakerOptions | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    problems.push(`"${label}" must be an object { failures, windowMs, coolDownMs } (got ${describe(value)})`);
    return undefined;
  }
  const input = value as Record<string, unknown>;
  const unknown = Object.keys(input).filter((key) => !Object.hasOwn(CIRCUIT_BREAKER_RULES, key));
  if (unknown.length) problems.push(`"${label}" has unknown fields ${unknown.map((key) => `"${key}"`).join(', ')}`);
  let valid = unknown.length === 0;
  for (const [name, [min, max]] of Object.entries(CIRCUIT_BREAKER_RULES)) {
    const field = input[name];
    if (typeof field !== 'number' || !Number.isInteger(field) || field < min || field > max) {
      problems.push(`"${label}.${name}" must be an integer from ${min} to ${max} (got ${describe(field)})`);
      valid = false;
    }
  }
  return valid
    ? { failures: input.failures as number, windowMs: input.windowMs as number, coolDownMs: input.coolDownMs as number }
    : undefined;
}

/**
 * Checks options once at start and fills in defaults. Every problem is reported at once, each
 * naming the option and its rule, in an {@link InvalidJobQueueOptionsError}.
 */
export function validateJobQueueOptions(raw: unknown): ResolvedJobQueueOptions {
  const problems: string[] = [];
  const input = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  if (!raw || typeof raw !== 'object') problems.push(`options must be an object (got ${describe(raw)})`);

  const backend = input.backend;
  if (!(JOB_QUEUE_BACKENDS as readonly unknown[]).includes(backend)) {
    problems.push(`"backend" must be one of ${JOB_QUEUE_BACKENDS.map((b) => `"${b}"`).join(', ')} (got ${describe(backend)})`);
  }

  const worker = input.worker ?? JOB_QUEUE_DEFAULTS.worker;
  if (typeof worker !== 'boolean') problems.push(`"worker" must be a boolean (got ${describe(worker)})`);
  if (backend === 'memory' && worker === false) {
    problems.push('"worker": false needs backend "bullmq": on "memory" nothing else could ever run the jobs');
  }

  const numbers = {} as Record<keyof typeof INTEGER_RULES, number>;
  for (const [name, [min, max]] of Object.entries(INTEGER_RULES) as Array<[keyof typeof INTEGER_RULES, [number, number]]>) {
    const value = input[name] ?? JOB_QUEUE_DEFAULTS[name];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      problems.push(`"${name}" must be an integer from ${min} to ${max} (got ${describe(value)})`);
    }
    numbers[name] = value as number;
  }

  const jobNames = input.jobNames ?? [];
  if (!Array.isArray(jobNames) || jobNames.some((name) => typeof name !== 'string' || name.length < 1 || name.length > 200)) {
    problems.push(`"jobNames" must be an array of job names of 1 to 200 characters (got ${describe(jobNames)})`);
  }

  const queues = input.queues;
  if (queues !== undefined && (!Array.isArray(queues) || queues.some((name) => typeof name !== 'string' || !QUEUE_NAME.test(name)))) {
    problems.push(
      `"queues" must be an array of queue names of 1 to 64 letters, digits, "_", ".", "-", "{" or "}" (got ${describe(queues)})`,
    );
  }

  const bridgeForeignWorkers = input.bridgeForeignWorkers ?? true;
  if (typeof bridgeForeignWorkers !== 'boolean') {
    problems.push(`"bridgeForeignWorkers" must be a boolean (got ${describe(bridgeForeignWorkers)})`);
  }

  const circuitBreaker =
    input.circuitBreaker === undefined ? undefined : checkCircuitBreaker(input.circuitBreaker, 'circuitBreaker', problems);
  const circuitBreakers: Record<string, CircuitBreakerOptions | false> = {};
  const perName = input.circuitBreakers ?? {};
  if (!perName || typeof perName !== 'object' || Array.isArray(perName)) {
    problems.push(`"circuitBreakers" must be an object of job name to breaker options or false (got ${describe(perName)})`);
  } else {
    for (const [name, value] of Object.entries(perName as Record<string, unknown>)) {
      if (name.length < 1 || name.length > 200) problems.push(`"circuitBreakers" keys must be job names of 1 to 200 characters`);
      if (value === false) circuitBreakers[name] = false;
      else {
        const breaker = checkCircuitBreaker(value, `circuitBreakers.${name}`, problems);
        if (breaker) circuitBreakers[name] = breaker;
      }
    }
  }

  const redisInput = (input.redis ?? {}) as Record<string, unknown>;
  if (typeof redisInput !== 'object' || Array.isArray(redisInput))
    problems.push(`"redis" must be an object (got ${describe(input.redis)})`);
  const url = redisInput.url ?? JOB_QUEUE_DEFAULTS.redisUrl;
  if (typeof url !== 'string' || !/^rediss?:\/\/[^\s]+$/.test(url) || !URL.canParse(url)) {
    // Never echo the URL: it may hold a password.
    problems.push('"redis.url" must be a redis:// or rediss:// URL, e.g. redis://user:password@host:6379/0');
  }
  const clusterNodes = redisInput.clusterNodes;
  const isCluster = clusterNodes !== undefined;
  if (isCluster) {
    if (
      !Array.isArray(clusterNodes) ||
      !clusterNodes.length ||
      !clusterNodes.every((node) => typeof node === 'string' && /^rediss?:\/\/[^\s/]+\/?$/.test(node) && URL.canParse(node))
    ) {
      // Never echo the nodes: their URLs may hold a password.
      problems.push(
        '"redis.clusterNodes" (REDIS_CLUSTER_NODES) must be a non-empty list of redis:// or rediss:// URLs without a database, e.g. redis://10.0.0.1:7000',
      );
    }
  }
  const prefix = redisInput.prefix ?? (isCluster ? `{${JOB_QUEUE_DEFAULTS.prefix}}` : JOB_QUEUE_DEFAULTS.prefix);
  if (
    typeof prefix !== 'string' ||
    !/^[A-Za-z0-9_.:-]*(\{[A-Za-z0-9_.:-]+\})?[A-Za-z0-9_.:-]*$/.test(prefix) ||
    prefix.length < 1 ||
    prefix.length > 64
  ) {
    problems.push(
      `"redis.prefix" must be 1 to 64 characters of letters, digits, "_", ".", ":" or "-", with at most one {hash tag} (got ${describe(prefix)})`,
    );
  } else if (isCluster && !carriesHashTag(prefix)) {
    // BullMQ needs each queue's keys in one slot: without a tag in the prefix, each queue name
    // carries its own (which also spreads the queues over the masters). `@JobHandler` jobs run on
    // the module's queue `jobs`, which has none: they need the prefix's.
    if (Array.isArray(jobNames) && jobNames.length) {
      problems.push(
        `"redis.prefix" must carry a hash tag on Redis Cluster when "jobNames" are set (@JobHandler jobs run on the queue "jobs", which has none of its own), e.g. "{${prefix}}" (got ${describe(prefix)})`,
      );
    }
    const untagged = Array.isArray(queues) ? queues.filter((name) => typeof name === 'string' && !carriesHashTag(name)) : [];
    if (untagged.length) {
      problems.push(
        `"queues" must each carry a hash tag on Redis Cluster when "redis.prefix" has none, as BullMQ requires, e.g. "{${untagged[0]}}" (got ${JSON.stringify(untagged)}); or give "redis.prefix" one, e.g. "{${prefix}}"`,
      );
    }
  }

  const replicaAcks = redisInput.replicaAcks ?? 0;
  if (!Number.isInteger(replicaAcks) || (replicaAcks as number) < 0 || (replicaAcks as number) > 5) {
    problems.push(`"redis.replicaAcks" (REDIS_REPLICA_ACKS) must be an integer from 0 to 5 (got ${describe(replicaAcks)})`);
  }
  const replicaAckTimeoutMs = redisInput.replicaAckTimeoutMs ?? 1000;
  // A WAIT holds its connection on the server: it must end well within the commands' 10 s timeout.
  if (!Number.isInteger(replicaAckTimeoutMs) || (replicaAckTimeoutMs as number) < 1 || (replicaAckTimeoutMs as number) > 5000) {
    problems.push(
      `"redis.replicaAckTimeoutMs" (REDIS_REPLICA_ACK_TIMEOUT_MS) must be an integer from 1 to 5000 (got ${describe(replicaAckTimeoutMs)})`,
    );
  }

  const failoverTimeoutMs = redisInput.failoverTimeoutMs ?? DEFAULT_FAILOVER_TIMEOUT_MS;
  const failoverProblem = failoverTimeoutProblem(failoverTimeoutMs, '"redis.failoverTimeoutMs"');
  if (failoverProblem) problems.push(failoverProblem);

  if (problems.length) throw new InvalidJobQueueOptionsError(problems);
  return {
    backend: backend as ResolvedJobQueueOptions['backend'],
    worker: worker as boolean,
    ...numbers,
    jobNames: [...new Set(jobNames as string[])],
    queues: queues === undefined ? undefined : [...new Set(queues as string[])],
    bridgeForeignWorkers: bridgeForeignWorkers as boolean,
    circuitBreaker,
    circuitBreakers,
    redis: {
      url: url as string,
      prefix: prefix as string,
      ...(isCluster ? { clusterNodes: [...(clusterNodes as string[])] } : {}),
      replicaAcks: replicaAcks as number,
      replicaAckTimeoutMs: replicaAckTimeoutMs as number,
      failoverTimeoutMs: failoverTimeoutMs as number,
    },
  };
}
