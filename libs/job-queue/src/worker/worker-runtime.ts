import { Logger } from '@nestjs/common';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { JobQueueWorker } from './job-queue-worker.js';
import { ProcessorBridge } from './processor-bridge.js';
import { encodeHandlerEvent } from '../contract/encode-event.js';
import type { JobContext } from '../contract/job-context.js';
import { DEFAULT_QUEUE } from '../contract/job-queue.js';
import type { JobHandlerRegistry } from '../handlers/job-handler-registry.js';
import type { ResolvedJobQueueOptions } from '../options/job-queue-module-options.js';
import type { BullMqWorkerParts } from '../backends/bullmq/bullmq-backend.js';
import { AttemptDriver } from './attempt-driver.js';
import { AttemptLifecycle } from './attempt-lifecycle.js';
import type { RedisCircuitBreakers } from '../backends/bullmq/circuit-breakers.js';
import type { JobScripts } from '../backends/bullmq/job-scripts.js';
import { JobStreamsBackend, jobStreamsBackend } from '../backends/bullmq/job-streams-backend.js';
import { ProgressReporter } from './progress-reporter.js';
import type { RedisConnections } from '../backends/bullmq/redis-connections.js';
import { queueFitsCluster, type RedisKeys } from '../backends/bullmq/redis-keys.js';

/**
 * How often a worker looks for jobs whose lock expired (their worker died): as often as the lock
 * lasts, but at least every 4 s, so that with the default 7 s lock a dead worker's job starts again
 * within about 11 s (the lock runs out, then the next check finds it).
 */
export function stalledIntervalMs(lockDurationMs: number): number {
  return Math.min(lockDurationMs, 4000);
}

/** Why a worker fails a `@JobHandler` job that has no metadata, as BullMQ records it. */
export const MISSING_METADATA = 'The job has no metadata (it was not enqueued through JobQueue, or its retention ran out): not run';

/** The reason running handlers are aborted with when this worker shuts down. */
class WorkerShutdown extends Error {
  constructor() {
    super('The worker is shutting down; the job goes back to the queue');
  }
}

/**
 * What a worker process runs besides serving reads: the BullMQ `Worker` of the `@JobHandler`
 * jobs, the {@link ProcessorBridge} that `@nestjs/bullmq` processors of this process report to,
 * and the cancel subscription that stops a cancelled job wherever it runs here. API-only
 * processes (`worker: false`) have none of it.
 */
export class WorkerRuntime {
  private readonly logger = new Logger('JobQueue');
  private readonly lifecycle: AttemptLifecycle;
  private readonly bridge: ProcessorBridge;
  private readonly driver: AttemptDriver;
  private worker?: Worker;
  /** The worker's backend when it composes (see {@link AttemptLifecycle.conclude}). */
  private finishThrough?: JobStreamsBackend;
  /** Running handler attempts in this process, by job id, to abort on cancel. */
  private readonly running = new Map<string, AbortController>();
  /** Handler runs in this process, by job id, oldest first (more than one only after a lost lock; see {@link runJob}). */
  private readonly runs = new Map<string, Array<Promise<unknown>>>();
  /** Set when shutdown gives up on running work: Redis retries stop instead of looping on. */
  private abandoned = false;

  private readonly options: ResolvedJobQueueOptions;
  private readonly handlers: JobHandlerRegistry;
  private readonly connections: RedisConnections;
  private readonly keys: RedisKeys;
  private readonly scripts: JobScripts;
  private readonly breakers: RedisCircuitBreakers;

  /** The `@JobHandler` runtime of a worker process, on the parts of the backend that serves it. */
  constructor(parts: BullMqWorkerParts) {
    const { options, handlers, connections, keys, scripts, breakers } = parts;
    this.options = options;
    this.handlers = handlers;
    this.connections = connections;
    this.keys = keys;
    this.scripts = scripts;
    this.breakers = breakers;
    this.lifecycle = new AttemptLifecycle(scripts, keys, options, this.logger, () => this.abandoned);
    breakers.retrying = (operation) => this.lifecycle.retrying(operation);
    this.driver = new AttemptDriver(this.lifecycle, breakers, scripts, keys);
    this.bridge = new ProcessorBridge(this.lifecycle, breakers, scripts, keys, {
      queues: options.queues,
      maxEventBytes: options.maxEventBytes,
      maxEventsPerJob: options.maxEventsPerJob,
    });
  }

  /** Registers the bridge, listens for cancels and starts taking `@JobHandler` jobs. */
  async start(): Promise<void> {
    const prefix = this.options.redis.prefix;
    ProcessorBridge.register(prefix, this.bridge);
    const subscriber = this.connections.subscriber!;
    await subscriber.subscribe(this.keys.cancelChannel());
    subscriber.on('message', (_channel: string, message: string) => {
      const [queue, jobId] = message.split('\n');
      if (queue === DEFAULT_QUEUE) this.running.get(jobId)?.abort(new Error('Job cancelled'));
      for (const worker of JobQueueWorker.openWorkers(queue, prefix)) worker.cancelJob(jobId, 'Job cancelled');
    });
    // On Redis Cluster under a prefix without a hash tag the `@JobHandler` queue's keys lie in
    // different slots: it has no handlers then (checked at start), and no worker.
    if (this.connections.cluster && !queueFitsCluster(prefix, DEFAULT_QUEUE)) return;
    // A job's start goes with BullMQ's move of the job to active, its terminal event with the move
    // to completed or failed, each in one script (with replica acks, confirmed afterwards).
    this.worker = new Worker(
      DEFAULT_QUEUE,
      (job, token) => this.runJob(job, token),
      {
        connection: this.connections.forWorker(),
        prefix,
        concurrency: this.options.concurrency,
        lockDuration: this.options.lockDurationMs,
        stalledInterval: stalledIntervalMs(this.options.lockDurationMs),
        autorun: false,
      },
      jobStreamsBackend(),
    );
    // The handler runtime runs the attempts, not the backend on its own.
    JobStreamsBackend.of(this.worker.getBackend())?.drive();
    this.finishThrough = JobStreamsBackend.of(this.worker.getBackend());
    // Each job BullMQ gives the worker has its attempt started in the same script.
    this.finishThrough?.startAttempts({
      create: false,
      maxEventsPerJob: this.options.maxEventsPerJob,
      breakers: () => this.breakers.namesWithBreakers(),
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
  async stop(): Promise<void> {
    ProcessorBridge.unregister(this.options.redis.prefix, this.bridge);
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

  /**
   * Runs one attempt of a `@JobHandler` job: the handler gets `emit`, whose events go to the job's
   * stream. A job whose circuit breaker is open goes back to BullMQ (delayed until the breaker may
   * let it through) before anything is written: it stays queued, with no attempt used.
   */
  private process(job: Job, token?: string): Promise<unknown> {
    const id = job.id!;
    const progress = new ProgressReporter(job);
    let abort: AbortController | undefined;
    return this.driver.run(job, token, this.finishThrough, {
      queue: DEFAULT_QUEUE,
      what: 'handler',
      onFlushed: (last) => progress.report({ eventId: last.id, type: last.type, events: last.appended }),
      notStarted: (started) => {
        // Without metadata the job has no owner and no stream (its enqueue never confirmed it, or its
        // retention ran out): it must not run, and BullMQ shows why.
        if (started.status === 'gone') throw new UnrecoverableError(MISSING_METADATA);
        return undefined; // cancelled before it ran: nothing to do
      },
      begin: (running) => {
        abort = running.abort;
        // An older run of this job in this process lost its lock and is superseded (its appends are refused).
        this.running.get(id)?.abort(new Error('Attempt superseded'));
        this.running.set(id, abort);
        const handler = this.handlers.get(job.name);
        const context: JobContext = {
          id,
          name: job.name,
          data: job.data as unknown,
          attempt: running.attempt,
          signal: abort.signal,
          emit: (type: string, data?: unknown) => running.append(type, encodeHandlerEvent(type, data, this.options.maxEventBytes)),
        };
        return async () => {
          if (!handler) throw new UnrecoverableError(`No handler for job name "${job.name}" in this worker`);
          return handler(context);
        };
      },
      after: async (running, outcome, ticket) => {
        // Everything the handler emitted goes in before the terminal event.
        await running.close();
        progress.flush();
        if (this.running.get(id) === abort) this.running.delete(id);
        if (running.refused || outcome.ok || !(abort?.signal.reason instanceof WorkerShutdown)) return undefined;
        // Hand the job back without using up an attempt: it is delayed by 0 ms, i.e. waiting again.
        await ticket?.settle('release', running.attempt); // a shutdown says nothing about the work
        await this.lifecycle.requeue(DEFAULT_QUEUE, id, running.attempt);
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      },
    });
  }

  /** BullMQ failed a job without our handler's outcome (e.g. stalled too often): end its stream. */
  private async onBullFailed(job: Job | undefined, error: Error): Promise<void> {
    if (!job?.id || (job.attemptsMade < (job.opts.attempts ?? 1) && !/stalled/i.test(error.message))) return;
    try {
      await this.lifecycle.writeTerminal(DEFAULT_QUEUE, job, 'failed', { error });
    } catch (cause) {
      this.logger.warn(`Could not record the failure of job ${job.id}: ${(cause as Error).message}`);
    }
  }
}
