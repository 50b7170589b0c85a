import { randomUUID } from 'node:crypto';
import { Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { DelayedError, Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { encodeHandlerEvent, errorMessageOf } from '../encode-event.js';
import { EventLimitExceededError } from '../errors/event-limit-exceeded.error.js';
import { InvalidCursorError } from '../errors/invalid-cursor.error.js';
import { JobAlreadyFinishedError } from '../errors/job-already-finished.error.js';
import { JobNotFoundError } from '../errors/job-not-found.error.js';
import { JobQueueError } from '../errors/job-queue.error.js';
import { JobQueueUnavailableError } from '../errors/job-queue-unavailable.error.js';
import { UnknownJobNameError } from '../errors/unknown-job-name.error.js';
import type { JobHandlerRegistry } from '../handlers/job-handler-registry.js';
import type { JobContext } from '../job-context.js';
import { isTerminalEventType, type JobEvent, type JobEventPage } from '../job-event.js';
import type { JobInfo, JobState } from '../job-info.js';
import {
  JobQueue,
  type CancelOptions,
  type EnqueueOptions,
  type FollowOptions,
  type JobAccessOptions,
  type ReadEventsOptions,
} from '../job-queue.js';
import type { ResolvedJobQueueOptions } from '../options/job-queue-module-options.js';
import { EventAppender } from './event-appender.js';
import { EventStreamReader, toEvents } from './event-stream-reader.js';
import { JobScripts } from './job-scripts.js';
import { ProgressReporter } from './progress-reporter.js';
import { connectRedis } from './redis-connection.js';
import { RedisKeys } from './redis-keys.js';
import { assertCursor, compareStreamIds } from './stream-id.js';

const RESOLVED = Promise.resolve();
/** Ids this backend hands out; anything else is unknown without asking Redis (and never becomes a key). */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The reason running handlers are aborted with when this worker shuts down. */
class WorkerShutdown extends Error {
  constructor() {
    super('The worker is shutting down; the job goes back to the queue');
  }
}

/** The Redis clients of one process; their number does not depend on how many clients follow jobs. */
interface Connections {
  /** Commands and scripts; fails fast while Redis is down (requests get 503, never hang). */
  commands: Redis;
  /** The shared blocking `XREAD` of {@link EventStreamReader}. */
  blocking: Redis;
  /** Cancel messages, on worker processes. */
  subscriber?: Redis;
  /** BullMQ's worker commands (it adds its own blocking connection), on worker processes. */
  worker?: Redis;
}

/**
 * The distributed backend: BullMQ on Redis runs the jobs on any worker process; each job's
 * events live in its own Redis Stream (`<prefix>:{<id>}:events`) next to a metadata hash, so any
 * instance can serve any job.
 */
export class BullMqJobQueue extends JobQueue implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly backend = 'bullmq' as const;
  private readonly logger = new Logger('JobQueue');
  private readonly keys: RedisKeys;
  private readonly scripts: JobScripts;
  private readonly reader: EventStreamReader;
  private readonly queue: Queue;
  private worker?: Worker;
  /** Running attempts in this process, by job id, to abort on cancel. */
  private readonly running = new Map<string, AbortController>();
  /** Processor calls in this process, by job id, oldest first (more than one only after a lost lock; see {@link runJob}). */
  private readonly runs = new Map<string, Array<Promise<unknown>>>();
  private stopped = false;
  /** Set when shutdown gives up on running work: Redis retries stop instead of looping on. */
  private abandoned = false;

  private constructor(
    private readonly options: ResolvedJobQueueOptions,
    private readonly handlers: JobHandlerRegistry,
    private readonly connections: Connections,
  ) {
    super();
    this.keys = new RedisKeys(options.redis.prefix);
    this.scripts = new JobScripts(connections.commands);
    this.reader = new EventStreamReader(connections.blocking, connections.commands, {
      liveKeyOf: (eventsKey) => this.keys.metaOfEvents(eventsKey),
    });
    this.queue = new Queue(RedisKeys.QUEUE_NAME, { connection: connections.commands, prefix: options.redis.prefix });
    this.queue.on('error', (error) => this.logger.warn(`Queue: ${error.message}`));
  }

  /**
   * Connects to Redis and returns the backend, or throws a {@link JobQueueUnavailableError} that
   * names the (redacted) URL: a process that cannot reach Redis at start should not start.
   */
  static async connect(options: ResolvedJobQueueOptions, handlers: JobHandlerRegistry): Promise<BullMqJobQueue> {
    const url = options.redis.url;
    const commands = await connectRedis(url, `${options.redis.prefix}:commands`, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 10_000,
    });
    const opened: Redis[] = [commands];
    try {
      const blocking = await connectRedis(url, `${options.redis.prefix}:reader`, { maxRetriesPerRequest: null });
      opened.push(blocking);
      const subscriber = options.worker
        ? await connectRedis(url, `${options.redis.prefix}:cancels`, { maxRetriesPerRequest: null })
        : undefined;
      if (subscriber) opened.push(subscriber);
      const queue = new BullMqJobQueue(options, handlers, { commands, blocking, subscriber });
      await queue.reader.start();
      for (const client of opened) client.on('error', queue.connectionErrorLogger());
      return queue;
    } catch (error) {
      for (const client of opened) client.disconnect();
      throw error;
    }
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.options.worker) return;
    const subscriber = this.connections.subscriber!;
    await subscriber.subscribe(this.keys.cancelChannel());
    subscriber.on('message', (_channel: string, jobId: string) => {
      this.running.get(jobId)?.abort(new Error('Job cancelled'));
    });
    // BullMQ does not close a connection it was given; it is ours to close at shutdown.
    this.connections.worker = this.connections.commands.duplicate({
      connectionName: `${this.options.redis.prefix}:worker`,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      commandTimeout: undefined,
    });
    this.connections.worker.on('error', this.connectionErrorLogger());
    this.worker = new Worker(RedisKeys.QUEUE_NAME, (job, token) => this.runJob(job, token), {
      connection: this.connections.worker,
      prefix: this.options.redis.prefix,
      concurrency: this.options.concurrency,
      lockDuration: this.options.lockDurationMs,
      stalledInterval: this.options.lockDurationMs,
      autorun: false,
    });
    const unhandled = this.options.jobNames.filter((name) => !this.handlers.has(name));
    if (unhandled.length) {
      this.logger.warn(`This worker has no handler for ${unhandled.join(', ')} (jobNames): it fails such jobs when it picks them up`);
    }
    this.worker.on('error', (error) => this.logger.warn(`Worker: ${error.message}`));
    this.worker.on('failed', (job, error) => void this.onBullFailed(job, error));
    void this.worker.run();
  }

  /**
   * Stops taking jobs, gives running handlers `shutdownGraceMs` to finish, then aborts the rest
   * and hands their jobs back to the queue (another worker starts them as a new attempt).
   */
  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.reader.close();
    if (this.worker) {
      const closing = this.worker.close().catch((error: Error) => this.logger.warn(`Closing the worker: ${error.message}`));
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.options.shutdownGraceMs)));
      if ((await Promise.race([closing, graceOver])) === 'timeout') {
        for (const abort of this.running.values()) abort.abort(new WorkerShutdown());
        // Handing back needs Redis; give that one more grace period, then let go.
        const settled = new Promise<'timeout'>(
          (resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(this.options.shutdownGraceMs, 1000))),
        );
        if ((await Promise.race([closing, settled])) === 'timeout') this.abandoned = true;
        await closing;
      }
      clearTimeout(timer);
    }
    this.abandoned = true;
    await this.queue.close().catch(() => undefined);
    const { commands, blocking, subscriber, worker } = this.connections;
    for (const client of [commands, blocking, subscriber, worker]) client?.disconnect();
  }

  async checkHealth(): Promise<void> {
    await this.guard(() => this.connections.commands.ping());
  }

  protected async addJob(name: string, data: string, options: EnqueueOptions): Promise<JobInfo> {
    if (!this.handlers.has(name) && !this.options.jobNames.includes(name)) {
      throw new UnknownJobNameError(name, [...new Set([...this.handlers.names(), ...this.options.jobNames])]);
    }
    const id = randomUUID();
    const maxAttempts = options.attempts ?? this.options.defaultAttempts;
    const createdAt = Date.now();
    const retentionSeconds = Math.ceil(this.options.retentionMs / 1000);
    const metaKey = this.keys.meta(id);
    const job = new Job(
      this.queue,
      name,
      JSON.parse(data),
      {
        jobId: id,
        attempts: maxAttempts,
        priority: options.priority,
        removeOnComplete: { age: retentionSeconds },
        removeOnFail: { age: retentionSeconds },
      },
      id,
    );
    await this.guard(async () => {
      // Both commands go out in this tick, on one connection, so Redis stores the metadata before
      // BullMQ's job exists: no worker starts a job whose metadata is missing, and no instance
      // sees a queued job it cannot describe. (A MULTI would make the pair atomic, but building an
      // ioredis transaction copies every script BullMQ defines and doubled the producer's CPU.)
      const client = await this.queue.getBackend().client;
      const created = this.connections.commands.hset(metaKey, {
        owner: options.owner,
        name,
        state: 'queued',
        attempt: 0,
        maxAttempts,
        createdAt,
        count: 0,
      });
      let added: Promise<unknown>;
      try {
        added = job.addJob(client);
      } catch (error) {
        added = Promise.reject(error as Error); // BullMQ checks some options synchronously
      }
      const [stored, queued] = await Promise.allSettled([created, added]);
      if (stored.status === 'rejected' || queued.status === 'rejected') {
        await this.connections.commands.del(metaKey).catch(() => undefined);
        throw stored.status === 'rejected' ? stored.reason : (queued as PromiseRejectedResult).reason;
      }
    });
    return { id, name, state: 'queued', attempt: 0, maxAttempts, createdAt };
  }

  async getJob(id: string, options: JobAccessOptions = {}): Promise<JobInfo> {
    this.assertWellFormed(id);
    const meta = await this.guard(() => this.scripts.readJob(this.keys.meta(id), options.owner));
    if (!meta) throw new JobNotFoundError(id);
    return this.toInfo(id, meta);
  }

  protected async readEventPage(
    id: string,
    options: ReadEventsOptions & { after: string; limit: number; waitMs: number },
  ): Promise<JobEventPage> {
    this.assertWellFormed(id);
    assertCursor(options.after);
    const eventsKey = this.keys.events(id);
    const page = await this.guard(() =>
      this.scripts.readEvents(this.keys.meta(id), eventsKey, options.owner, options.after, options.limit),
    );
    if (page.status === 'gone') throw new JobNotFoundError(id);
    if (page.status === 'cursor') throw new InvalidCursorError(options.after);
    const { terminal, entries } = page;
    let events = toEvents(entries);
    if (!events.length && !terminal && options.waitMs > 0 && !this.stopped) {
      const subscription = this.reader.subscribe(eventsKey, options.after);
      try {
        events = (await subscription.next(options.waitMs, options.signal)).slice(0, options.limit);
      } finally {
        subscription.close();
      }
    }
    const last = events.length ? events[events.length - 1].id : options.after;
    const done =
      events.some((event) => isTerminalEventType(event.type)) || (terminal !== undefined && compareStreamIds(terminal, last) <= 0);
    return { events, next: last, done };
  }

  /** Follows through the shared reader: no Redis connection and no polling per follower. */
  override async *followPagesAfter(
    id: string,
    page: JobEventPage,
    options: FollowOptions = {},
  ): AsyncGenerator<JobEvent[], void, undefined> {
    if (page.done || options.signal?.aborted || this.stopped) return;
    const subscription = this.reader.subscribe(this.keys.events(id), page.next);
    // Closing the subscription ends its wait: one listener for the whole follow, none per wait.
    const stop = (): void => subscription.close();
    options.signal?.addEventListener('abort', stop, { once: true });
    try {
      while (!options.signal?.aborted && !this.stopped && !subscription.closed) {
        const events = await subscription.next(Infinity);
        if (!events.length) continue;
        const end = events.findIndex((event) => isTerminalEventType(event.type));
        yield end === -1 ? events : events.slice(0, end + 1);
        if (end !== -1) return;
      }
    } finally {
      options.signal?.removeEventListener('abort', stop);
      subscription.close();
    }
    // Expired or lost while followed: say so, rather than end as if the stream were complete.
    if (subscription.gone) throw new JobNotFoundError(id);
  }

  async cancel(id: string, options: CancelOptions = {}): Promise<JobInfo> {
    this.assertWellFormed(id);
    const owner = await this.guard(() => this.connections.commands.hget(this.keys.meta(id), 'owner'));
    this.assertVisible(id, owner, options);
    const reason = options.reason ?? 'cancelled';
    const reply = await this.guard(() =>
      this.scripts.finishJob(
        this.keys.meta(id),
        this.keys.events(id),
        'cancelled',
        JSON.stringify({ reason }),
        Date.now(),
        this.options.retentionMs,
        undefined,
        undefined,
      ),
    );
    if (reply[0] === 'gone') throw new JobNotFoundError(id);
    if (reply[0] === 'final') throw new JobAlreadyFinishedError(id, String(reply[1]));
    // The terminal event is written: now make the worker stop. Both steps are best effort; a
    // worker also sees the terminal event at its next start or append.
    await this.guard(async () => {
      await this.connections.commands.publish(this.keys.cancelChannel(), id);
      await this.queue.remove(id).catch(() => 0);
    }).catch((error: unknown) =>
      this.logger.warn(`Cancel of ${id} is recorded, but notifying workers failed: ${(error as Error).message}`),
    );
    return this.getJob(id, options);
  }

  /**
   * BullMQ hands a job out again when its lock expired (e.g. Redis was away for longer than the
   * lock), possibly to this same worker while the first run still goes on. Its lock renewal is
   * keyed by job id: when the older run returns, BullMQ stops renewing the newer run's lock too,
   * and the job stalls again and fails. So an older run returns only after the newer ones have.
   */
  private async runJob(job: Job, token?: string): Promise<unknown> {
    const id = job.id!;
    const runs = this.runs.get(id) ?? [];
    this.runs.set(id, runs);
    const run = this.process(job, token);
    runs.push(run);
    try {
      return await run;
    } finally {
      for (let newer = runs.slice(runs.indexOf(run) + 1); newer.length; newer = runs.slice(runs.indexOf(run) + 1)) {
        await Promise.allSettled(newer);
      }
      runs.splice(runs.indexOf(run), 1);
      if (!runs.length) this.runs.delete(id);
    }
  }

  private async process(job: Job, token?: string): Promise<unknown> {
    const id = job.id!;
    const metaKey = this.keys.meta(id);
    const eventsKey = this.keys.events(id);
    const handler = this.handlers.get(job.name);
    const runId = randomUUID();
    const started = await this.retrying(() =>
      this.scripts.startAttempt(metaKey, eventsKey, Date.now(), this.options.maxEventsPerJob, runId),
    );
    if (started[0] === 'limit') {
      const limitError = new EventLimitExceededError(this.options.maxEventsPerJob);
      await this.finish(id, 'failed', { error: limitError });
      throw new UnrecoverableError(limitError.message);
    }
    if (started[0] !== 'ok') return undefined; // cancelled before it ran, or expired: nothing to do
    const attempt = Number(started[1]);
    // Only this attempt appends from now on, so counting here enforces the cap at `emit`, synchronously.
    let eventCount = Number(started[3]);
    const abort = new AbortController();
    // An older run of this job in this process lost its lock and is superseded (its appends are refused).
    this.running.get(id)?.abort(new Error('Attempt superseded'));
    this.running.set(id, abort);
    let limitError: EventLimitExceededError | undefined;
    const progress = new ProgressReporter(job);
    const appender = new EventAppender(
      this.scripts,
      metaKey,
      eventsKey,
      attempt,
      this.options.maxEventsPerJob,
      (reason) => {
        if (reason === 'limit') limitError = new EventLimitExceededError(this.options.maxEventsPerJob);
        abort.abort(limitError ?? new Error(reason === 'final' ? 'Job cancelled' : 'Attempt superseded'));
      },
      (last) => progress.report({ eventId: last.id, type: last.type, events: last.appended }),
      this.logger,
      () => this.abandoned,
    );
    const context: JobContext = {
      id,
      name: job.name,
      data: job.data as unknown,
      attempt,
      signal: abort.signal,
      emit: (type: string, data?: unknown) => {
        const json = encodeHandlerEvent(type, data, this.options.maxEventBytes);
        if (limitError) throw limitError;
        if (appender.stopped) return RESOLVED;
        // Keep one slot for the terminal event.
        if (eventCount + 1 >= this.options.maxEventsPerJob) {
          limitError = new EventLimitExceededError(this.options.maxEventsPerJob);
          abort.abort(limitError);
          throw limitError;
        }
        eventCount++;
        return appender.push(type, json);
      },
    };

    let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
    try {
      if (!handler) throw new UnrecoverableError(`No handler for job name "${job.name}" in this worker`);
      outcome = { ok: true, value: await handler(context) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    // Everything the handler emitted goes in before the terminal event.
    await appender.close();
    progress.flush();
    if (this.running.get(id) === abort) this.running.delete(id);
    if (appender.stopped === 'final' || appender.stopped === 'stale') return undefined;
    if (!outcome.ok && abort.signal.reason instanceof WorkerShutdown) {
      // Hand the job back without using up an attempt: it is delayed by 0 ms, i.e. waiting again.
      await this.retrying(() => this.scripts.requeueJob(metaKey, attempt));
      await job.moveToDelayed(Date.now(), token);
      throw new DelayedError();
    }

    if (limitError) {
      await this.finish(id, 'failed', { error: limitError }, attempt);
      throw new UnrecoverableError(limitError.message);
    }
    if (outcome.ok) {
      let result: string;
      try {
        result = JSON.stringify(outcome.value ?? null);
      } catch (error) {
        const failure = new Error(`The handler's result is not JSON-serializable: ${(error as Error).message}`);
        await this.finish(id, 'failed', { error: failure }, attempt);
        throw new UnrecoverableError(failure.message);
      }
      await this.finish(id, 'completed', { result }, attempt);
      return outcome.value;
    }
    const lastAttempt = outcome.error instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    if (lastAttempt) {
      await this.finish(id, 'failed', { error: outcome.error }, attempt);
    } else {
      const requeued = await this.retrying(() => this.scripts.requeueJob(metaKey, attempt));
      if (requeued !== 'ok') return undefined; // cancelled meanwhile: no retry
    }
    throw outcome.error instanceof Error ? outcome.error : new Error(errorMessageOf(outcome.error));
  }

  /** Writes the terminal event of an attempt (retried through Redis blips; idempotent). `result` is JSON text. */
  private async finish(
    id: string,
    state: 'completed' | 'failed',
    outcome: { result: string } | { error: unknown },
    attempt?: number,
  ): Promise<void> {
    let data: string;
    let field: { field: 'result' | 'error'; value: string };
    if ('result' in outcome) {
      data = `{"result":${outcome.result}}`;
      field = { field: 'result', value: outcome.result };
    } else {
      const error = JSON.stringify({ message: errorMessageOf(outcome.error) });
      data = `{"error":${error}}`;
      field = { field: 'error', value: error };
    }
    await this.retrying(() =>
      this.scripts.finishJob(this.keys.meta(id), this.keys.events(id), state, data, Date.now(), this.options.retentionMs, field, attempt),
    );
  }

  /** BullMQ failed a job without our processor finishing it (e.g. stalled too often): end its stream. */
  private async onBullFailed(job: Job | undefined, error: Error): Promise<void> {
    if (!job?.id || (job.attemptsMade < (job.opts.attempts ?? 1) && !/stalled/i.test(error.message))) return;
    try {
      await this.finish(job.id, 'failed', { error });
    } catch (cause) {
      this.logger.warn(`Could not record the failure of job ${job.id}: ${(cause as Error).message}`);
    }
  }

  private async retrying<T>(operation: () => Promise<T>): Promise<T> {
    for (let tries = 0; ; tries++) {
      try {
        return await operation();
      } catch (error) {
        if (tries >= 100 || this.abandoned) throw error;
        if (tries % 20 === 0) this.logger.warn(`Redis command failed (${(error as Error).message}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** Math.min(tries, 5), 1000)));
      }
    }
  }

  private assertWellFormed(id: string): void {
    if (typeof id !== 'string' || !JOB_ID.test(id)) throw new JobNotFoundError(String(id));
  }

  private assertVisible(id: string, owner: string | null | undefined, options: JobAccessOptions): asserts owner is string {
    if (!owner || (options.owner !== undefined && owner !== options.owner)) throw new JobNotFoundError(id);
  }

  private toInfo(id: string, meta: Record<string, string>): JobInfo {
    const info: JobInfo = {
      id,
      name: meta.name,
      state: meta.state as JobState,
      attempt: Number(meta.attempt),
      maxAttempts: Number(meta.maxAttempts),
      createdAt: Number(meta.createdAt),
    };
    if (meta.startedAt) info.startedAt = Number(meta.startedAt);
    if (meta.finishedAt) info.finishedAt = Number(meta.finishedAt);
    if (meta.state === 'completed' && meta.result !== undefined) info.result = JSON.parse(meta.result);
    if (meta.state === 'failed' && meta.error !== undefined) info.error = JSON.parse(meta.error);
    return info;
  }

  /** Runs a Redis operation; anything but our own typed errors becomes a 503-style error. */
  private async guard<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (error instanceof JobQueueError) throw error;
      throw this.unavailable(error);
    }
  }

  private unavailable(cause: unknown): JobQueueUnavailableError {
    this.logger.debug?.(`Redis unavailable: ${(cause as Error)?.message}`);
    return new JobQueueUnavailableError('The job queue backend (Redis) is unavailable; retry shortly', 1, { cause });
  }

  private connectionErrorLogger(): (error: Error) => void {
    let last = 0;
    return (error) => {
      if (Date.now() - last < 5000) return;
      last = Date.now();
      this.logger.warn(`Redis connection: ${error.message}`);
    };
  }
}
