import type { ModuleMetadata } from '@nestjs/common';
import type { CircuitBreakerOptions } from '../contract/circuit-breaker.js';

/** The backends a {@link JobQueue} can run on. */
export const JOB_QUEUE_BACKENDS = ['memory', 'bullmq'] as const;
export type JobQueueBackendName = (typeof JOB_QUEUE_BACKENDS)[number];

/** Options of {@link JobQueueModule.forRoot}. Validated once at start. */
export interface JobQueueModuleOptions {
  /** `memory`: one process, zero setup (development, tests). `bullmq`: Redis, many processes. */
  backend: JobQueueBackendName;
  /** Run job handlers in this process (default true). `false` makes an api-only instance. */
  worker?: boolean;
  /** Handlers running at once in this process (default 10, 1..1000). */
  concurrency?: number;
  /** How long a finished job and its events stay readable, in ms (default 1 hour). */
  retentionMs?: number;
  /** Hard cap on the events of one job, lifecycle events included (default 100,000). */
  maxEventsPerJob?: number;
  /** Largest serialized `data` of one event, in bytes (default 64 KiB). */
  maxEventBytes?: number;
  /** Attempts a job gets when `enqueue` does not say (default 1: no retry). */
  defaultAttempts?: number;
  /**
   * On shutdown, how long running handlers may take to finish before they are aborted and their
   * jobs handed back to the queue for another worker (default 10000 ms).
   */
  shutdownGraceMs?: number;
  /**
   * `bullmq`: how long a worker's lock on a running job lasts without renewal (default 7000 ms;
   * BullMQ renews it every quarter of this). A worker that dies (SIGKILL, lost host) stops renewing;
   * its jobs are picked up again by another worker within about this plus the stalled check's
   * interval (this, at most 4 s): about 11 s by default, as a new attempt. A Redis outage longer
   * than the lock makes running jobs run again (see the README's Guarantees).
   */
  lockDurationMs?: number;
  /**
   * `bullmq`: job names this process may enqueue although it has no `@JobHandler` for them, for an
   * api whose handler code lives only in the workers (default none). Every worker must have a
   * handler for each name: a worker that picks up a job it has no handler for fails it. The
   * `memory` backend ignores it: there, enqueue needs a handler in the same process.
   */
  jobNames?: readonly string[];
  /**
   * `bullmq`: the BullMQ queues whose processors' jobs get event streams (when they run on a
   * `JobQueueWorker`) and that `enqueue` may name. Default: every queue. The `@JobHandler` queue
   * (`jobs`) is always served. On Redis Cluster under a prefix without a hash tag each name must
   * carry its own (`{reports}`), see `redis.prefix`.
   */
  queues?: readonly string[];
  /**
   * `bullmq`: also bridge jobs run by workers that do not load this module (another language, a
   * plain BullMQ `Worker`) from BullMQ's queue events stream (default true). The queues bridged
   * are `queues`, or, when unset, every queue this application registers with
   * `BullModule.registerQueue` or has a `@Processor` for. One process at a time reads each queue.
   */
  bridgeForeignWorkers?: boolean;
  /**
   * A circuit breaker for every job name (default none): `@JobHandler` jobs, and the jobs of
   * processors on bridged queues that run on a `JobQueueWorker` (or, on `memory`, in the library).
   * On `bullmq` the failures are counted in Redis, across every worker process of the prefix, so
   * the breaker opens after `failures` failed attempts wherever they ran. While it is open, jobs of
   * that name wait in the queue (state `queued`, {@link JobInfo.waitingFor} says why) without
   * starting or using up an attempt. Every process should be given the same breakers.
   *
   * @example `{ failures: 5, windowMs: 60_000, coolDownMs: 30_000 }`
   */
  circuitBreaker?: CircuitBreakerOptions;
  /**
   * Circuit breakers per job name, overriding {@link circuitBreaker}: a job name's own breaker, or
   * `false` for none. Breakers are per job name, whatever the queue: a processor job named
   * `report` shares the breaker of every other job named `report`.
   *
   * @example `{ build: { failures: 3, windowMs: 10_000, coolDownMs: 5_000 }, report: false }`
   */
  circuitBreakers?: Readonly<Record<string, CircuitBreakerOptions | false>>;
  /** Redis connection, for the `bullmq` backend. */
  redis?: {
    /** `redis://[user:password@]host:port[/db]` or `rediss://...` (default `redis://127.0.0.1:6379`). */
    url?: string;
    /**
     * Prefix of every key (default `jq`, `{jq}` on Redis Cluster). On Redis Cluster BullMQ needs
     * each queue's keys in one hash slot (its scripts touch several keys of a queue): give the
     * prefix a hash tag (`{jq}`: every queue on the master of that tag), or give it none and each
     * queue name its own (`jq` with queues `{reports}` and `{exports}`: each queue on the master
     * of its tag, which spreads the load over the masters). `@JobHandler` jobs run on the queue
     * `jobs`, which has no tag: they need the prefix's. A job's events stream and metadata lie in
     * the slot of its BullMQ keys.
     */
    prefix?: string;
    /**
     * Redis Cluster: some of its nodes, as `redis://[user:password@]host:port` URLs (one is enough,
     * the rest are found). When set, `url` is not used. Env: `REDIS_CLUSTER_NODES`, or several
     * comma-separated URLs in `REDIS_URL`.
     */
    clusterNodes?: readonly string[];
    /**
     * Replicas that must have a job's events before a write of them counts as done (`WAIT`), so
     * that a master's failover loses no event a producer saw written (default 0: Redis replicates
     * asynchronously, and a failover can lose the last writes). Env: `REDIS_REPLICA_ACKS`.
     */
    replicaAcks?: number;
    /** How long such a write waits for its replicas before it fails and is retried (ms, default 1000). Env: `REDIS_REPLICA_ACK_TIMEOUT_MS`. */
    replicaAckTimeoutMs?: number;
    /**
     * Redis Cluster: how long a worker's command waits through the failover of its master before
     * it fails (ms, 1000 to 600000, default 20000), e.g. a processor's `job.updateProgress` while
     * the master of BullMQ's keys is replaced. Cover `cluster-node-timeout` plus the promotion (a
     * few seconds); see the README's "Redis Cluster". Applies to the workers' connections, not to
     * the one that serves requests, which fails fast (503). Env: `REDIS_FAILOVER_TIMEOUT_MS`.
     */
    failoverTimeoutMs?: number;
  };
}

/** Options after validation, with every default filled in. */
export interface ResolvedJobQueueOptions {
  backend: JobQueueBackendName;
  worker: boolean;
  concurrency: number;
  retentionMs: number;
  maxEventsPerJob: number;
  maxEventBytes: number;
  defaultAttempts: number;
  shutdownGraceMs: number;
  lockDurationMs: number;
  jobNames: readonly string[];
  /** Bridged queues; `undefined` for every queue. */
  queues: readonly string[] | undefined;
  bridgeForeignWorkers: boolean;
  /** The breaker of every job name without one of its own. */
  circuitBreaker: CircuitBreakerOptions | undefined;
  circuitBreakers: Readonly<Record<string, CircuitBreakerOptions | false>>;
  /** `clusterNodes`: Redis Cluster's start nodes (`url` is then unused). */
  redis: {
    url: string;
    prefix: string;
    clusterNodes?: readonly string[];
    replicaAcks: number;
    replicaAckTimeoutMs: number;
    failoverTimeoutMs: number;
  };
}

/** Options of {@link JobQueueModule.forRootAsync}, typically fed from `@nestjs/config`. */
export interface JobQueueModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  // Nest's own injection tokens are loosely typed; this mirrors FactoryProvider['inject'].
  inject?: Array<string | symbol | (abstract new (...args: never[]) => unknown) | (new (...args: never[]) => unknown)>;
  useFactory: (...args: never[]) => JobQueueModuleOptions | Promise<JobQueueModuleOptions>;
}
