import type { OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { InvalidArgumentError } from '../errors/invalid-argument.error.js';
import { JobQueueUnavailableError } from '../errors/job-queue-unavailable.error.js';
import type { JobQueueBackendName } from '../options/job-queue-module-options.js';
import { QUEUE_NAME } from '../options/validate-job-queue-options.js';
import type { JobEvent, JobEventPage } from './job-event.js';
import type { JobInfo } from './job-info.js';
import type { JobQueueBackend, PageRequest } from './job-queue-backend.js';
import type { CircuitBreakerState } from './circuit-breaker.js';
import type { QueueBridgeStatus } from './queue-bridge-status.js';
import type { QueueJobCounts } from './queue-job-counts.js';
import type { JobQueueMeter } from '../metrics/job-queue-meter.js';
import { tracedEnqueue } from '../tracing/job-tracing.js';
import { withinDeadline } from './within-deadline.js';

/** The queue of `@JobHandler` jobs, and of every call that names no queue. */
export const DEFAULT_QUEUE = 'jobs';

/** Which job, and who may see it. Omit `owner` only for trusted, system-level access (no ownership check). */
export interface JobAccessOptions {
  /**
   * The BullMQ queue of the job (job ids are unique per queue). Default: the queue of the
   * `@JobHandler` jobs.
   */
  queue?: string;
  /** The caller's identity; a job enqueued by another owner, or added without one, is reported as not found. */
  owner?: string;
}

/** Options of {@link JobQueue.enqueue}. */
export interface EnqueueOptions {
  /**
   * The BullMQ queue to add the job to, processed by a `@Processor` of that queue. Default: the
   * queue of the `@JobHandler` jobs, where `name` selects the handler.
   */
  queue?: string;
  /**
   * The owner of the job; only this owner can read or cancel it through owner-checked calls.
   * Omit it for system code: the job then has no owner, as a job added with plain BullMQ, and
   * only system access (calls without `owner`) reaches it.
   */
  owner?: string;
  /** Attempts in all (1..100); defaults to the module's `defaultAttempts`. */
  attempts?: number;
  /**
   * Fixed delay before each retry, in ms (0..86400000, default 0: at once). On `bullmq` it is
   * BullMQ's `backoff: { type: 'fixed', delay }`; on `memory` the job waits as long, queued, before
   * its next attempt. Between attempts the job reads as `queued`.
   */
  backoffMs?: number;
  /** 1 (first) .. 2,097,152 (last); jobs without a priority go before prioritized ones. */
  priority?: number;
  /**
   * Cancel the job (reason `abandoned`) once no client has read its events for this long
   * (1000..3600000 ms): polling, SSE or NDJSON, on any instance. Default: never.
   */
  abandonAfterMs?: number;
}

/** Options of {@link JobQueue.readEvents}. */
export interface ReadEventsOptions extends JobAccessOptions {
  /** Return events after this cursor; omit (or `'0'`) to start at the first event. */
  after?: string;
  /** At most this many events (1..1000, default 1000). */
  limit?: number;
  /** When nothing is new and the job is not done, wait up to this long for the next event (0..30000 ms, default 0). */
  waitMs?: number;
  /** Ends a wait early (for example when the HTTP client goes away). */
  signal?: AbortSignal;
}

/** Options of {@link JobQueue.follow}. */
export interface FollowOptions extends JobAccessOptions {
  after?: string;
  /** Stops the iteration (it then simply ends). */
  signal?: AbortSignal;
}

/** Options of {@link JobQueue.cancel}. */
export interface CancelOptions extends JobAccessOptions {
  /** Recorded in the `cancelled` event (default `"cancelled"`). */
  reason?: string;
  /**
   * What led to the cancel, for the metrics (`job_queue_cancels_total{cause}`): `request` (the
   * default: someone asked) or `disconnect` (the client of a direct delivery went away).
   */
  cause?: 'request' | 'disconnect';
}

/** The first cursor: reading after it starts at the job's first event, on every backend. */
export const START_CURSOR = '0';

export const MAX_READ_LIMIT = 1000;
export const MAX_WAIT_MS = 30_000;
/** How long {@link JobQueue.checkHealth} waits for the backend by default: half of a Kubernetes probe's default 1 s timeout. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 500;
/** BullMQ's largest priority (2^21 - 1). */
const MAX_PRIORITY = 2_097_151;
/** The longest retry backoff: one day. */
const MAX_BACKOFF_MS = 86_400_000;
const FOLLOW_WAIT_MS = MAX_WAIT_MS;

/** @throws InvalidArgumentError when `queue` is given and is not a valid queue name. */
export function checkQueue(queue: unknown): void {
  if (queue !== undefined && (typeof queue !== 'string' || !QUEUE_NAME.test(queue))) {
    throw new InvalidArgumentError('queue must be a queue name of 1 to 64 letters, digits, "_", ".", "-", "{" or "}"');
  }
}

function checkInteger(name: string, value: unknown, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
  }
}

/**
 * The job queue: inject it into controllers and services (it is its own injection token).
 *
 * Both backends implement the same contract: every job's stream starts with `started` (again on
 * each retry), carries the job's events in order, and ends with exactly one terminal event,
 * `completed`, `failed` or `cancelled`. Events stay readable until `retentionMs` after the job
 * reached its final state. Every method checks its arguments here, once for every backend, and
 * throws the typed errors of this library (`JobNotFoundError`, ...), never backend-specific ones.
 *
 * @publicApi
 */
export class JobQueue implements OnApplicationBootstrap, OnApplicationShutdown {
  /** Made by `JobQueueModule` around the backend its options name. */
  constructor(
    private readonly store: JobQueueBackend,
    private readonly meter?: JobQueueMeter,
  ) {}

  /** Which backend this is. */
  get backend(): JobQueueBackendName {
    return this.store.name;
  }

  /**
   * Adds a job: for the `@JobHandler` registered under `name` (default queue), or for the
   * `@Processor` of `options.queue`, with `name` as the BullMQ job name.
   *
   * Called inside an OpenTelemetry span, it records an `enqueue` span and stores its trace context
   * with the job (not in its data): every attempt's span, on whichever worker, is its child, and
   * every event of the job has its `traceId`.
   *
   * All or nothing: once it resolves, the job is stored and queued for good. When it throws on
   * `bullmq`, what it had written is taken back; what cannot be (Redis unreachable meanwhile) does
   * not last: the job's metadata expires within 5 minutes unless a worker started the job by then
   * (it then runs in full), and a worker refuses a `@JobHandler` job without metadata (BullMQ
   * records it as failed, with the reason).
   *
   * @throws UnknownJobNameError when no handler has that name.
   * @throws UnknownQueueError when no processor serves that queue, or it is not bridged.
   * @throws InvalidArgumentError when an option is out of range or `data` is not JSON.
   * @throws JobQueueUnavailableError when the backend could not store the job (retry after its `retryAfterSeconds`).
   */
  async enqueue<TData = unknown>(name: string, data: TData, options: EnqueueOptions = {}): Promise<JobInfo> {
    if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError('name must be a non-empty string');
    if (options?.owner !== undefined && (typeof options.owner !== 'string' || options.owner.length === 0)) {
      throw new InvalidArgumentError('owner must be a non-empty string, or left out for a job without one');
    }
    checkInteger('attempts', options.attempts, 1, 100);
    checkInteger('backoffMs', options.backoffMs, 0, MAX_BACKOFF_MS);
    checkInteger('priority', options.priority, 1, MAX_PRIORITY);
    checkInteger('abandonAfterMs', options.abandonAfterMs, 1000, 3_600_000);
    let json: string | undefined;
    try {
      json = JSON.stringify(data ?? null);
    } catch (error) {
      throw new InvalidArgumentError(`data must be JSON-serializable: ${(error as Error).message}`);
    }
    if (json === undefined) throw new InvalidArgumentError('data must be JSON-serializable');
    const queue = queueOf(options);
    const job = await tracedEnqueue({ system: this.store.name, queue, name }, (trace) =>
      this.store.add({
        queue,
        name,
        data: json,
        owner: options.owner ?? '',
        attempts: options.attempts,
        backoffMs: options.backoffMs,
        priority: options.priority,
        abandonAfterMs: options.abandonAfterMs,
        trace,
      }),
    );
    this.meter?.sink?.enqueued(queue);
    return job;
  }

  /**
   * The job's current state.
   *
   * @throws JobNotFoundError when unknown, expired, or owned by someone else.
   */
  async getJob(id: string, options: JobAccessOptions = {}): Promise<JobInfo> {
    return this.store.getJob(id, { queue: queueOf(options), owner: options.owner });
  }

  /**
   * Reads up to `limit` events after `after`; with `waitMs`, waits for the next event when none
   * is there yet (long-poll). Reading a job in a final state replays its events until it expires.
   *
   * @throws JobNotFoundError, InvalidCursorError, InvalidArgumentError.
   */
  async readEvents(id: string, options: ReadEventsOptions = {}): Promise<JobEventPage> {
    checkInteger('limit', options.limit, 1, MAX_READ_LIMIT);
    checkInteger('waitMs', options.waitMs, 0, MAX_WAIT_MS);
    return this.store.readPage(id, pageRequest(options));
  }

  /**
   * Follows a job's events as an async iterable that ends after the terminal event (or when
   * `signal` aborts). Resumes after `after`. The job is checked before the first event, so an
   * unknown id throws on the first `next()`.
   */
  async *follow(id: string, options: FollowOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
    for await (const page of this.followPages(id, options)) yield* page;
  }

  /**
   * Like {@link follow}, but yields the events in the batches they arrived in (never empty), so a
   * writer can send each batch at once.
   */
  async *followPages(id: string, options: FollowOptions = {}): AsyncGenerator<JobEvent[], void, undefined> {
    const first = await this.readEvents(id, { ...options, waitMs: 0 });
    if (first.events.length) yield first.events;
    if (first.done || options.signal?.aborted) return;
    yield* this.followPagesAfter(id, first, options);
  }

  /**
   * Goes on following after `page`, a page this caller has just read with {@link readEvents} (with
   * the same `owner`): the job and the cursor are not checked again, so a writer that needed that
   * first page anyway (to answer 404 or 204 before any byte) does not read it twice. Yields
   * nothing when `page` was `done`.
   */
  async *followPagesAfter(id: string, page: JobEventPage, options: FollowOptions = {}): AsyncGenerator<JobEvent[], void, undefined> {
    if (page.done || options.signal?.aborted) return;
    const request = { queue: queueOf(options), owner: options.owner, signal: options.signal };
    if (this.store.followAfter) {
      yield* this.store.followAfter(id, page, request);
      return;
    }
    for (let after = page.next, done = false; !done;) {
      if (options.signal?.aborted) return;
      const next = await this.store.readPage(id, { ...request, after, limit: MAX_READ_LIMIT, waitMs: FOLLOW_WAIT_MS });
      if (next.events.length) yield next.events;
      done = next.done;
      after = next.next;
    }
  }

  /**
   * Cancels a queued or running job, from any instance: a queued job never runs, a running
   * handler's (or processor's) `signal` fires, and the stream ends with `cancelled`.
   *
   * @throws JobNotFoundError, JobAlreadyFinishedError.
   */
  async cancel(id: string, options: CancelOptions = {}): Promise<JobInfo> {
    const info = await this.store.cancel(id, { queue: queueOf(options), owner: options.owner, reason: options.reason ?? 'cancelled' });
    this.meter?.sink?.cancelled(options.cause ?? 'request');
    return info;
  }

  /**
   * How many jobs each queue this process knows (the `@JobHandler` queue and the bridged ones)
   * holds in each state, for dashboards and metrics.
   *
   * @throws JobQueueUnavailableError when the backend is unreachable.
   */
  jobCounts(): Promise<QueueJobCounts[]> {
    return this.store.jobCounts();
  }

  /**
   * The state of each Redis connection of this process (`commands`, `reader`: the shared blocking
   * reader every follower depends on, `cancels` and `worker` on workers), as ioredis reports it:
   * `ready`, `connecting`, `reconnecting`, ... Empty on the memory backend.
   */
  connectionStatus(): Record<string, string> {
    return this.store.connectionStatus?.() ?? {};
  }

  /**
   * Resolves when the backend can serve requests: a Redis round trip on `bullmq`. It answers
   * within `timeoutMs` (default {@link DEFAULT_HEALTH_TIMEOUT_MS}) whatever Redis does: a hung
   * server (stopped, or a black-holed network) keeps the connection open and its commands
   * unanswered until the command timeout (10 s), far past a probe's usual 1 s.
   *
   * @throws JobQueueUnavailableError when the backend is unreachable or does not answer in time.
   */
  checkHealth(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
    return withinDeadline(
      this.store.checkHealth(),
      timeoutMs,
      () => new JobQueueUnavailableError(`The job queue backend (${this.backend}) did not answer within ${timeoutMs} ms`),
    );
  }

  /**
   * Each queue whose foreign-worker jobs are bridged, as this process sees it: whether it holds the
   * queue's lease, how far behind BullMQ's events stream it is, takeovers and gaps so far. Empty on
   * the memory backend and with `bridgeForeignWorkers: false`.
   */
  bridgeStatus(): QueueBridgeStatus[] {
    return this.store.bridgeStatus?.() ?? [];
  }

  /**
   * The circuit breakers (options `circuitBreaker`, `circuitBreakers`) of the job names this
   * process knows: its `@JobHandler` names and `jobNames` (with a module-wide breaker), the names
   * given their own breaker, and every name whose jobs it has run or held back. On `bullmq` the
   * state is the one all workers share, read from Redis.
   *
   * @throws JobQueueUnavailableError when Redis is unreachable.
   */
  circuitBreakers(): Promise<CircuitBreakerState[]> {
    return this.store.circuitBreakers();
  }

  /** @internal Nest lifecycle: starts running jobs once the application is built. */
  async onApplicationBootstrap(): Promise<void> {
    await this.store.start();
  }

  /** @internal Nest lifecycle: stops running jobs and releases connections. */
  async onApplicationShutdown(): Promise<void> {
    await this.store.stop();
  }
}

/** The job's queue, checked (it becomes part of Redis keys) and defaulted. */
function queueOf(options: { queue?: string } | undefined): string {
  checkQueue(options?.queue);
  return options?.queue ?? DEFAULT_QUEUE;
}

function pageRequest(options: ReadEventsOptions): PageRequest {
  return {
    queue: queueOf(options),
    owner: options.owner,
    after: options.after === undefined || options.after === '' ? START_CURSOR : options.after,
    limit: options.limit ?? MAX_READ_LIMIT,
    waitMs: options.waitMs ?? 0,
    signal: options.signal,
  };
}
