import { randomUUID } from 'node:crypto';
import { Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { DelayedError, Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { JobQueueWorker } from '../../bridge/job-queue-worker.js';
import { ProcessorBridge } from '../../bridge/processor-bridge.js';
import { encodeHandlerEvent } from '../../contract/encode-event.js';
import { InvalidCursorError } from '../../errors/invalid-cursor.error.js';
import { JobAlreadyFinishedError } from '../../errors/job-already-finished.error.js';
import { JobNotFoundError } from '../../errors/job-not-found.error.js';
import { JobQueueError } from '../../errors/job-queue.error.js';
import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';
import { UnknownJobNameError } from '../../errors/unknown-job-name.error.js';
import { UnknownQueueError } from '../../errors/unknown-queue.error.js';
import type { JobHandlerRegistry } from '../../handlers/job-handler-registry.js';
import type { JobContext } from '../../contract/job-context.js';
import { isTerminalEventType, type JobEvent, type JobEventPage } from '../../contract/job-event.js';
import type { JobInfo, JobState } from '../../contract/job-info.js';
import {
  DEFAULT_QUEUE,
  JobQueue,
  checkQueue,
  type CancelOptions,
  type EnqueueOptions,
  type FollowOptions,
  type JobAccessOptions,
  type ReadEventsOptions,
} from '../../contract/job-queue.js';
import type { ResolvedJobQueueOptions } from '../../options/job-queue-module-options.js';
import { AttemptLifecycle, type AttemptOutcome } from './attempt-lifecycle.js';
import { EventStreamReader, toEvents } from '../../reader/event-stream-reader.js';
import { JobScripts } from './job-scripts.js';
import { ProgressReporter } from './progress-reporter.js';
import { connectRedis } from './redis-connection.js';
import { RedisKeys } from './redis-keys.js';
import { assertCursor, compareStreamIds } from '../../reader/stream-id.js';

/** Ids this backend hands out; anything else is unknown without asking Redis (and never becomes a key). */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Ids of jobs other code added to a processor queue (BullMQ's numbers, or custom ids of safe characters). */
const FOREIGN_JOB_ID = /^[A-Za-z0-9_.~-]{1,200}$/;

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
  private readonly lifecycle: AttemptLifecycle;
  /** Bridges the jobs of `@nestjs/bullmq` processors (JobQueueWorker) run in this process. */
  private readonly bridge: ProcessorBridge;
  /** BullMQ queues by name, for enqueue and the removal of cancelled jobs. */
  private readonly queues = new Map<string, Queue>();
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
    this.lifecycle = new AttemptLifecycle(this.scripts, this.keys, options, this.logger, () => this.abandoned);
    this.bridge = new ProcessorBridge(this.lifecycle, { queues: options.queues, maxEventBytes: options.maxEventBytes });
  }

  /** The BullMQ queue `name` (made on first use, on the command connection). */
  private queueNamed(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.connections.commands, prefix: this.options.redis.prefix });
      queue.on('error', (error) => this.logger.warn(`Queue ${name}: ${error.message}`));
      this.queues.set(name, queue);
    }
    return queue;
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
    ProcessorBridge.register(this.options.redis.prefix, this.bridge);
    const subscriber = this.connections.subscriber!;
    await subscriber.subscribe(this.keys.cancelChannel());
    subscriber.on('message', (_channel: string, message: string) => {
      const [queue, jobId] = message.split('\n');
      if (queue === DEFAULT_QUEUE) this.running.get(jobId)?.abort(new Error('Job cancelled'));
      for (const worker of JobQueueWorker.openWorkers(queue, this.options.redis.prefix)) worker.cancelJob(jobId, 'Job cancelled');
    });
    // BullMQ does not close a connection it was given; it is ours to close at shutdown.
    this.connections.worker = this.connections.commands.duplicate({
      connectionName: `${this.options.redis.prefix}:worker`,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      commandTimeout: undefined,
    });
    this.connections.worker.on('error', this.connectionErrorLogger());
    this.worker = new Worker(DEFAULT_QUEUE, (job, token) => this.runJob(job, token), {
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
    ProcessorBridge.unregister(this.options.redis.prefix, this.bridge);
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
    await Promise.all([...this.queues.values()].map((queue) => queue.close().catch(() => undefined)));
    const { commands, blocking, subscriber, worker } = this.connections;
    for (const client of [commands, blocking, subscriber, worker]) client?.disconnect();
  }

  async checkHealth(): Promise<void> {
    await this.guard(() => this.connections.commands.ping());
  }

  protected async addJob(name: string, data: string, options: EnqueueOptions & { queue: string }): Promise<JobInfo> {
    const queueName = options.queue;
    if (queueName === DEFAULT_QUEUE && !this.handlers.has(name) && !this.options.jobNames.includes(name)) {
      throw new UnknownJobNameError(name, [...new Set([...this.handlers.names(), ...this.options.jobNames])]);
    }
    if (queueName !== DEFAULT_QUEUE && this.options.queues !== undefined && !this.options.queues.includes(queueName)) {
      throw new UnknownQueueError(queueName, this.options.queues);
    }
    const id = randomUUID();
    const maxAttempts = options.attempts ?? this.options.defaultAttempts;
    const createdAt = Date.now();
    const retentionSeconds = Math.ceil(this.options.retentionMs / 1000);
    const metaKey = this.keys.meta(queueName, id);
    const queue = this.queueNamed(queueName);
    const job = new Job(
      queue,
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
      const client = await queue.getBackend().client;
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
    const queue = this.queueOf(options);
    this.assertWellFormed(queue, id, options);
    const read = () => this.scripts.readJob(this.keys.meta(queue, id), options.owner);
    let meta = await this.guard(read);
    if (!meta && (await this.adopted(queue, id, options))) meta = await this.guard(read);
    if (!meta) throw new JobNotFoundError(id);
    return this.toInfo(id, meta);
  }

  /**
   * A processor job added with plain BullMQ (no owner) has no metadata of ours until a worker
   * starts it; a system-level read (no owner) gives it one when BullMQ has the job, so that it can
   * be followed from the start. True when it now has one.
   */
  private async adopted(queue: string, id: string, options: JobAccessOptions): Promise<boolean> {
    if (queue === DEFAULT_QUEUE || options.owner !== undefined) return false;
    if (this.options.queues !== undefined && !this.options.queues.includes(queue)) return false;
    return this.guard(() => this.scripts.ensureJob(this.keys.meta(queue, id), this.keys.bullJob(queue, id), Date.now()));
  }

  protected async readEventPage(
    id: string,
    options: ReadEventsOptions & { after: string; limit: number; waitMs: number },
  ): Promise<JobEventPage> {
    const queue = this.queueOf(options);
    this.assertWellFormed(queue, id, options);
    assertCursor(options.after);
    const eventsKey = this.keys.events(queue, id);
    const read = () => this.scripts.readEvents(this.keys.meta(queue, id), eventsKey, options.owner, options.after, options.limit);
    let page = await this.guard(read);
    if (page.status === 'gone' && (await this.adopted(queue, id, options))) page = await this.guard(read);
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
    const subscription = this.reader.subscribe(this.keys.events(this.queueOf(options), id), page.next);
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
    const queue = this.queueOf(options);
    this.assertWellFormed(queue, id, options);
    // Existence and ownership first (a plain BullMQ job is adopted for a system-level cancel).
    await this.getJob(id, options);
    const reason = options.reason ?? 'cancelled';
    const reply = await this.guard(() =>
      this.scripts.finishJob(
        this.keys.meta(queue, id),
        this.keys.events(queue, id),
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
      await this.connections.commands.publish(this.keys.cancelChannel(), `${queue}\n${id}`);
      await this.queueNamed(queue)
        .remove(id)
        .catch(() => 0);
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

  /** Runs one attempt of a `@JobHandler` job: the handler gets `emit`, whose events go to the job's stream. */
  private async process(job: Job, token?: string): Promise<unknown> {
    const id = job.id!;
    const handler = this.handlers.get(job.name);
    const progress = new ProgressReporter(job);
    const started = await this.lifecycle.start(DEFAULT_QUEUE, job, {
      onFlushed: (last) => progress.report({ eventId: last.id, type: last.type, events: last.appended }),
    });
    if (started.status !== 'ok') return undefined; // cancelled before it ran, or expired: nothing to do
    const running = started.attempt;
    const abort = running.abort;
    // An older run of this job in this process lost its lock and is superseded (its appends are refused).
    this.running.get(id)?.abort(new Error('Attempt superseded'));
    this.running.set(id, abort);
    const context: JobContext = {
      id,
      name: job.name,
      data: job.data as unknown,
      attempt: running.attempt,
      signal: abort.signal,
      emit: (type: string, data?: unknown) => running.append(type, encodeHandlerEvent(type, data, this.options.maxEventBytes)),
    };

    let outcome: AttemptOutcome;
    try {
      if (!handler) throw new UnrecoverableError(`No handler for job name "${job.name}" in this worker`);
      outcome = { ok: true, value: await handler(context) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    // Everything the handler emitted goes in before the terminal event.
    await running.appender.close();
    progress.flush();
    if (this.running.get(id) === abort) this.running.delete(id);
    if (!running.ended && !outcome.ok && abort.signal.reason instanceof WorkerShutdown) {
      // Hand the job back without using up an attempt: it is delayed by 0 ms, i.e. waiting again.
      await this.lifecycle.requeue(DEFAULT_QUEUE, id, running.attempt);
      await job.moveToDelayed(Date.now(), token);
      throw new DelayedError();
    }
    return this.lifecycle.conclude(job, running, outcome, 'handler');
  }

  /** BullMQ failed a job without our processor finishing it (e.g. stalled too often): end its stream. */
  private async onBullFailed(job: Job | undefined, error: Error): Promise<void> {
    if (!job?.id || (job.attemptsMade < (job.opts.attempts ?? 1) && !/stalled/i.test(error.message))) return;
    try {
      await this.lifecycle.finish(DEFAULT_QUEUE, job.id, 'failed', { error });
    } catch (cause) {
      this.logger.warn(`Could not record the failure of job ${job.id}: ${(cause as Error).message}`);
    }
  }

  /** The job's queue; a name that is not one (it becomes part of Redis keys) is refused. */
  private queueOf(options: JobAccessOptions): string {
    checkQueue(options.queue);
    return options.queue ?? DEFAULT_QUEUE;
  }

  /**
   * Ids that could never be a job of `queue` are unknown without asking Redis (and never become
   * keys); so is every job to an empty owner (jobs added without an owner are stored with an empty
   * one, and only system access, without `owner`, reaches them).
   */
  private assertWellFormed(queue: string, id: string, options: JobAccessOptions = {}): void {
    if (typeof id !== 'string' || !(queue === DEFAULT_QUEUE ? JOB_ID : FOREIGN_JOB_ID).test(id) || options.owner === '') {
      throw new JobNotFoundError(String(id));
    }
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
