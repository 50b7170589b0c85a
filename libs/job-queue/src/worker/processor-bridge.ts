import { Logger } from '@nestjs/common';
import { UnrecoverableError, type Job } from 'bullmq';
import { errorMessageOf } from '../contract/encode-event.js';
import type { AttemptLifecycle, RunningAttempt } from './attempt-lifecycle.js';
import type { RedisCircuitBreakers } from '../backends/bullmq/circuit-breakers.js';
import type { JobScripts } from '../backends/bullmq/job-scripts.js';
import type { JobStreamsBackend } from '../backends/bullmq/job-streams-backend.js';
import { StreamCalls } from '../backends/bullmq/stream-calls.js';
import type { RedisKeys } from '../backends/bullmq/redis-keys.js';
import { DEFAULT_QUEUE } from '../contract/job-queue.js';
import { AttemptDriver } from './attempt-driver.js';
import type { BridgedJob } from './bridged-job.js';

/** A worker that waits this long for its bridge says so in the log (it keeps waiting). */
const WAIT_WARNING_MS = 10_000;

/**
 * The worker side of the bridge for the jobs of `@nestjs/bullmq` processors and other
 * {@link JobQueueWorker}s in this process: `started` when an attempt begins, each `updateProgress`
 * and `log` call in call order (sent next to BullMQ's own write), then one terminal event from BullMQ's outcome. One bridge
 * per BullMQ key prefix is registered by the `bullmq` backend; workers find it by their prefix.
 */
export class ProcessorBridge {
  private static readonly byPrefix = new Map<string, ProcessorBridge>();
  private static readonly waiting = new Map<string, Array<(bridge: ProcessorBridge) => void>>();
  private readonly logger = new Logger('JobQueue');
  private readonly driver: AttemptDriver;

  constructor(
    private readonly lifecycle: AttemptLifecycle,
    private readonly breakers: RedisCircuitBreakers,
    private readonly scripts: JobScripts,
    private readonly keys: RedisKeys,
    private readonly options: {
      /** Queues to bridge; every queue when undefined. */
      queues?: readonly string[];
      maxEventBytes: number;
      maxEventsPerJob: number;
    },
  ) {
    this.driver = new AttemptDriver(lifecycle, breakers, scripts, keys);
  }

  /** Makes `bridge` the one of `prefix` and hands it to the workers waiting for it. */
  static register(prefix: string, bridge: ProcessorBridge): void {
    ProcessorBridge.byPrefix.set(prefix, bridge);
    for (const resolve of ProcessorBridge.waiting.get(prefix) ?? []) resolve(bridge);
    ProcessorBridge.waiting.delete(prefix);
  }

  static unregister(prefix: string, bridge: ProcessorBridge): void {
    if (ProcessorBridge.byPrefix.get(prefix) === bridge) ProcessorBridge.byPrefix.delete(prefix);
  }

  /**
   * The bridge of `prefix`, once the job queue module has started (a worker may be created, and
   * get its first job, before the module is ready: `registerQueue({ processors })` starts workers
   * while the application is still being built).
   */
  static forPrefix(prefix: string, queue: string): Promise<ProcessorBridge> {
    const bridge = ProcessorBridge.byPrefix.get(prefix);
    if (bridge) return Promise.resolve(bridge);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () =>
          new Logger('JobQueue').warn(
            `A JobQueueWorker of queue "${queue}" waits for JobQueueModule (backend bullmq, prefix "${prefix}") to process its job`,
          ),
        WAIT_WARNING_MS,
      );
      timer.unref();
      const waiters = ProcessorBridge.waiting.get(prefix) ?? [];
      waiters.push((found) => {
        clearTimeout(timer);
        resolve(found);
      });
      ProcessorBridge.waiting.set(prefix, waiters);
    });
  }

  /**
   * Lets `backend`, that of a worker of `queue`, start the attempts of the jobs BullMQ gives that
   * worker inside BullMQ's move of the job to active (see {@link JobStreamsBackend.startAttempts}),
   * when the queue is bridged.
   */
  adopt(queue: string, backend: JobStreamsBackend): void {
    if (!this.bridges(queue)) return;
    backend.startAttempts({
      create: true,
      maxEventsPerJob: this.options.maxEventsPerJob,
      breakers: () => this.breakers.namesWithBreakers(),
    });
  }

  /** True when the jobs of `queue` get event streams (the `@JobHandler` queue has its own runner). */
  bridges(queue: string): boolean {
    return queue !== DEFAULT_QUEUE && (this.options.queues === undefined || this.options.queues.includes(queue));
  }

  /**
   * Runs one attempt of a processor job: `started`, the processor (`work`) with its progress and
   * log calls bridged, then the terminal event or the retry. `cancel` stops the processor through
   * BullMQ (`Worker#cancelJob`) when the job is cancelled or reaches the event cap. A job whose
   * circuit breaker is open goes back to BullMQ unstarted (delayed; `token` is the worker's lock).
   * `backend`: the composing part of the worker's backend, which sends each call as one script
   * with BullMQ's.
   */
  async run(
    queue: string,
    job: BridgedJob,
    token: string | undefined,
    work: () => Promise<unknown>,
    cancel: (reason: string) => void,
    backend: JobStreamsBackend,
  ): Promise<unknown> {
    let calls: StreamCalls | undefined;
    return this.driver.run(job, token, backend, {
      queue,
      what: 'processor',
      create: { name: job.name, maxAttempts: Math.max(1, job.opts.attempts ?? 1), createdAt: job.timestamp || Date.now() },
      notStarted: (started) => {
        if (started.status !== 'final') return undefined;
        // Completed already (BullMQ lost the news, e.g. the worker died right after): same result, no rerun.
        if (started.state === 'completed') return started.result === undefined ? undefined : JSON.parse(started.result);
        throw new UnrecoverableError(`The job is already ${started.state}`);
      },
      begin: (running) => {
        running.abort.signal.addEventListener(
          'abort',
          () => {
            // A superseded run must not stop the job by id: the run that superseded it has that id too.
            if (running.appender.stopped === 'stale') return;
            cancel(String((running.abort.signal.reason as Error)?.message ?? 'cancelled'));
          },
          { once: true },
        );
        calls = this.streamCalls(queue, job.id!, running);
        backend.attach(job.id!, calls);
        job.streamCalls = calls;
        return work;
      },
      after: async (running, outcome, ticket) => {
        job.streamCalls = undefined;
        // Every call the processor made goes in before the terminal event (a processor may call
        // without awaiting; the composed calls are answered on another connection than the end's).
        if (calls) {
          await calls.settled();
          calls.close();
          backend.detach(job.id!, calls);
        }
        await running.close();
        if (!running.refused) return undefined;
        await ticket?.settle('release', running.attempt);
        // Cancelled (or superseded) meanwhile: the stream has its end. BullMQ records what the
        // processor did, as it would without the bridge, but a cancelled job is not retried.
        if (outcome.ok) return { value: outcome.value };
        throw new UnrecoverableError(errorMessageOf(outcome.error));
      },
    });
  }

  /** The stream side of an attempt's composed calls: a refusal stops the attempt as its appender's would. */
  private streamCalls(queue: string, jobId: string, running: RunningAttempt): StreamCalls {
    const eventsKey = this.keys.events(queue, jobId);
    return new StreamCalls({
      metaKey: this.keys.meta(queue, jobId),
      eventsKey,
      attempt: running.attempt,
      maxEvents: this.options.maxEventsPerJob,
      maxEventBytes: this.options.maxEventBytes,
      decode: (reply) => this.scripts.appendEventsReply(eventsKey, reply),
      onStop: (reason) => running.appender.stop(reason),
      // With replica acks a call counts once the replicas have its event; one they do not confirm
      // is written again by a call of its own (the same writer and sequence number: once).
      confirm: this.scripts.waitsForReplicas
        ? async ({ keys: [meta, events], args: [writer, seq, maxEvents, attempt, ...pair] }) => {
            try {
              await this.scripts.confirmWriteElsewhere(meta);
            } catch {
              await this.lifecycle.retrying(() =>
                this.scripts.appendEvents(meta, events, String(writer), Number(seq), Number(maxEvents), Number(attempt), pair.map(String)),
              );
            }
          }
        : undefined,
    });
  }

  /**
   * BullMQ failed a job for good without the processor's outcome (stalled too often, or a retry
   * BullMQ refused): write its terminal event. Idempotent: a stream that has one is left as it is.
   */
  async onFailed(queue: string, job: Job, error: Error): Promise<void> {
    if (!job.id || !job.finishedOn) return;
    try {
      await this.lifecycle.writeTerminal(queue, job, 'failed', { error });
    } catch (cause) {
      this.logger.warn(`Could not record the failure of job ${job.id} of queue ${queue}: ${(cause as Error).message}`);
    }
  }
}
