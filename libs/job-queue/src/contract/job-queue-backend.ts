import type { JobQueueBackendName } from '../options/job-queue-module-options.js';
import type { JobEvent, JobEventPage } from './job-event.js';
import type { JobInfo } from './job-info.js';
import type { CircuitBreakerState } from './circuit-breaker.js';
import type { QueueBridgeStatus } from './queue-bridge-status.js';
import type { QueueJobCounts } from './queue-job-counts.js';
import type { TraceCarrier } from '../tracing/job-tracing.js';

/** Which job, once the facade has checked and defaulted the queue. */
export interface JobAddress {
  /** A valid queue name. */
  queue: string;
  /** Undefined for system access; a job of another owner (or of none) is then unknown. */
  owner?: string;
}

/** What {@link JobQueueBackend.add} stores: checked arguments, `data` as JSON text. */
export interface NewJob {
  queue: string;
  name: string;
  data: string;
  /** '' for a job without an owner (system code's): only system access reaches it. */
  owner: string;
  attempts?: number;
  /** Fixed delay before each retry, in ms; 0 or absent: at once. */
  backoffMs?: number;
  priority?: number;
  abandonAfterMs?: number;
  /** The trace context of the enqueue, stored with the job (never in its data). */
  trace?: TraceCarrier;
}

/** A read with every option checked and defaulted. */
export interface PageRequest extends JobAddress {
  after: string;
  /** 1..1000 */
  limit: number;
  /** 0..30000; 0 answers at once. */
  waitMs: number;
  signal?: AbortSignal;
}

/** A follow after a page the caller just read. */
export interface FollowRequest extends JobAddress {
  signal?: AbortSignal;
}

/**
 * What a backend implements behind the {@link JobQueue} facade: storage and transport only. The
 * facade checks every argument before a backend sees it, so a backend trusts its input.
 *
 * @internal
 */
export interface JobQueueBackend {
  readonly name: JobQueueBackendName;
  add(job: NewJob): Promise<JobInfo>;
  getJob(id: string, address: JobAddress): Promise<JobInfo>;
  readPage(id: string, request: PageRequest): Promise<JobEventPage>;
  /**
   * Follows on after `page` (not `done`), sharing reads between followers. Without it the facade
   * long-polls {@link readPage}.
   */
  followAfter?(id: string, page: JobEventPage, request: FollowRequest): AsyncGenerator<JobEvent[], void, undefined>;
  cancel(id: string, address: JobAddress & { reason: string }): Promise<JobInfo>;
  checkHealth(): Promise<void>;
  /** Jobs per state of every queue this process knows. */
  jobCounts(): Promise<QueueJobCounts[]>;
  /** State of each connection the backend holds (ioredis' `status`: `ready`, `reconnecting`, ...), where it has any. */
  connectionStatus?(): Record<string, string>;
  /** The foreign-worker bridges of this process, where the backend has them. */
  bridgeStatus?(): QueueBridgeStatus[];
  /** The circuit breakers of the job names this process knows of, with their shared state. */
  circuitBreakers(): Promise<CircuitBreakerState[]>;
  /** Once the application is built: start running jobs. */
  start(): Promise<void> | void;
  /** At shutdown: stop running jobs and release connections. */
  stop(): Promise<void> | void;
}
