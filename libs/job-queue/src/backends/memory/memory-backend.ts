import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { judgeAttempt, type AttemptOutcome } from '../../contract/attempt-verdict.js';
import { encodeHandlerEvent, encodeProcessorCall, errorMessageOf } from '../../contract/encode-event.js';
import { EventLimitExceededError } from '../../errors/event-limit-exceeded.error.js';
import { InvalidCursorError } from '../../errors/invalid-cursor.error.js';
import { JobAlreadyFinishedError } from '../../errors/job-already-finished.error.js';
import { JobNotFoundError } from '../../errors/job-not-found.error.js';
import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';
import { UnknownJobNameError } from '../../errors/unknown-job-name.error.js';
import { UnknownQueueError } from '../../errors/unknown-queue.error.js';
import type { JobHandlerRegistry } from '../../handlers/job-handler-registry.js';
import type { ProcessorRegistry } from '../../handlers/processor-registry.js';
import type { JobContext } from '../../contract/job-context.js';
import type { JobEventPage } from '../../contract/job-event.js';
import type { JobInfo } from '../../contract/job-info.js';
import { DEFAULT_QUEUE } from '../../contract/job-queue.js';
import type { JobAddress, JobQueueBackend, NewJob, PageRequest } from '../../contract/job-queue-backend.js';
import type { QueueJobCounts } from '../../contract/queue-job-counts.js';
import type { JobQueueMeter } from '../../metrics/job-queue-meter.js';
import type { ResolvedJobQueueOptions } from '../../options/job-queue-module-options.js';
import { AttemptSpan } from '../../tracing/job-tracing.js';
import { breakerOutcomeOf, type BreakerOutcome, type CircuitBreakerState } from '../../contract/circuit-breaker.js';
import { MemoryBullJob } from './memory-bull-job.js';
import { MemoryCircuitBreakers } from './memory-circuit-breakers.js';
import { MemoryJob } from './memory-job.js';

const CURSOR_PATTERN = /^(0|[1-9][0-9]{0,14})$/;
const RESOLVED = Promise.resolve();

/**
 * The embedded backend: jobs, events and handlers live in this process. Zero setup, for
 * development and tests; it keeps every promise of the contract except surviving the process.
 */
export class MemoryBackend implements JobQueueBackend {
  readonly name = 'memory' as const;
  private readonly logger = new Logger('JobQueue');
  /** By `<queue>\n<id>`: ids are unique per queue. */
  private readonly jobs = new Map<string, MemoryJob>();
  /** Jobs without a priority run first, in order; then prioritized ones, lowest number first. */
  private readonly waiting: MemoryJob[] = [];
  private readonly prioritized: MemoryJob[] = [];
  /** Attempts running, by queue (each queue has its own concurrency, as each BullMQ worker does). */
  private readonly running = new Map<string, number>();
  private accepting = false;
  private stopped = false;
  private readonly breakers: MemoryCircuitBreakers;
  /** Wakes the queue when the earliest cool-down of a breaker holding jobs back ends. */
  private breakerWake?: NodeJS.Timeout;
  private breakerWakeAt = Number.POSITIVE_INFINITY;

  constructor(
    private readonly options: ResolvedJobQueueOptions,
    private readonly handlers: JobHandlerRegistry,
    private readonly processors: ProcessorRegistry,
    private readonly meter?: JobQueueMeter,
  ) {
    this.breakers = new MemoryCircuitBreakers(options);
  }

  start(): void {
    this.accepting = true;
    this.pump();
  }

  stop(): void {
    this.stopped = true;
    this.accepting = false;
    clearTimeout(this.breakerWake);
    for (const job of this.jobs.values()) {
      job.abort?.abort(new JobQueueUnavailableError('The job queue is shutting down'));
      if (job.expiry) clearTimeout(job.expiry);
      clearInterval(job.watchdog);
      clearTimeout(job.retryTimer);
      for (const wake of job.waiters) wake();
      job.waiters.clear();
    }
  }

  async checkHealth(): Promise<void> {
    if (this.stopped) throw new JobQueueUnavailableError('The job queue is shutting down');
  }

  async add(spec: NewJob): Promise<JobInfo> {
    this.assertRunning();
    if (spec.queue === DEFAULT_QUEUE) {
      if (!this.handlers.has(spec.name)) throw new UnknownJobNameError(spec.name, this.handlers.names());
    } else if (!this.processors.get(spec.queue) || (this.options.queues && !this.options.queues.includes(spec.queue))) {
      throw new UnknownQueueError(spec.queue, this.processors.queues());
    }
    const job = new MemoryJob(
      spec.queue,
      randomUUID(),
      spec.name,
      spec.owner,
      JSON.parse(spec.data),
      spec.attempts ?? this.options.defaultAttempts,
      spec.priority,
      Date.now(),
      spec.abandonAfterMs,
      spec.trace,
      spec.backoffMs,
    );
    this.jobs.set(MemoryBackend.keyOf(job.queue, job.id), job);
    if (job.abandonAfterMs) this.watchReads(job, job.abandonAfterMs);
    this.schedule(job);
    return job.info();
  }

  async getJob(id: string, address: JobAddress): Promise<JobInfo> {
    const job = this.lookup(id, address);
    const info = job.info();
    if (job.state === 'queued') {
      const waitingFor = this.breakers.waitingFor(job.name, MemoryBackend.tokenOf(job));
      if (waitingFor) info.waitingFor = waitingFor;
    }
    return info;
  }

  async circuitBreakers(): Promise<CircuitBreakerState[]> {
    return this.breakers.states(this.handlers.names());
  }

  async readPage(id: string, options: PageRequest): Promise<JobEventPage> {
    const job = this.lookup(id, options);
    if (!CURSOR_PATTERN.test(options.after)) throw new InvalidCursorError(options.after);
    job.readAt = Date.now();
    const after = Number(options.after);
    // Only ids this job issued: a cursor beyond its last event would wait for an event that never comes.
    if (after > job.events.length) throw new InvalidCursorError(options.after);
    if (after >= job.events.length && !job.final && options.waitMs > 0) {
      await this.waitForEvent(job, options.waitMs, options.signal);
      this.assertRunning();
    }
    const events = job.events.slice(after, after + options.limit);
    const last = events.length ? Number(events[events.length - 1].id) : after;
    return {
      events,
      next: events.length ? events[events.length - 1].id : options.after,
      done: job.terminalSeq !== undefined && job.terminalSeq <= last,
    };
  }

  async jobCounts(): Promise<QueueJobCounts[]> {
    const byQueue = new Map<string, Record<string, number>>([[DEFAULT_QUEUE, {}]]);
    for (const job of this.jobs.values()) {
      const counts = byQueue.get(job.queue) ?? {};
      counts[job.state] = (counts[job.state] ?? 0) + 1;
      byQueue.set(job.queue, counts);
    }
    const states = ['queued', 'running', 'completed', 'failed', 'cancelled'];
    return [...byQueue].map(([queue, counts]) => ({
      queue,
      counts: Object.fromEntries(states.map((state) => [state, counts[state] ?? 0])),
    }));
  }

  async cancel(id: string, request: JobAddress & { reason: string }): Promise<JobInfo> {
    this.assertRunning();
    const job = this.lookup(id, request);
    if (job.final) throw new JobAlreadyFinishedError(id, job.state);
    const { reason } = request;
    this.terminal(job, 'cancelled', { reason });
    job.abort?.abort(new Error(`Job cancelled: ${reason}`));
    this.expireLater(job);
    return job.info();
  }

  /**
   * Cancels `job` (reason `abandoned`) once no client has read it for `abandonAfterMs`: a reader
   * waiting for its next event counts as reading it.
   */
  private watchReads(job: MemoryJob, abandonAfterMs: number): void {
    job.watchdog = setInterval(
      () => {
        if (job.final) return clearInterval(job.watchdog);
        if (job.waiters.size > 0 || Date.now() - job.readAt <= abandonAfterMs) return;
        clearInterval(job.watchdog);
        this.terminal(job, 'cancelled', { reason: 'abandoned' });
        this.meter?.sink?.cancelled('abandoned');
        job.abort?.abort(new Error('Job abandoned: no client read it'));
        this.expireLater(job);
      },
      Math.max(250, Math.floor(abandonAfterMs / 4)),
    );
    job.watchdog.unref();
  }

  private lookup(id: string, address: JobAddress): MemoryJob {
    const job = typeof id === 'string' ? this.jobs.get(MemoryBackend.keyOf(address.queue, id)) : undefined;
    // A job without an owner (stored with '') is reached by system access only, never by an owner ''.
    if (!job || (address.owner !== undefined && (address.owner === '' || job.owner !== address.owner))) {
      throw new JobNotFoundError(String(id));
    }
    return job;
  }

  private static keyOf(queue: string, id: string): string {
    return `${queue}\n${id}`;
  }

  /** The job as its circuit breaker knows it (the probe's holder). */
  private static tokenOf(job: MemoryJob): string {
    return `${job.queue}:${job.id}`;
  }

  /** Tells the job's breaker how its attempt ended (`attempt`: the attempt's number). */
  private settleBreaker(job: MemoryJob, attempt: number, outcome: BreakerOutcome): void {
    this.breakers.record(job.name, MemoryBackend.tokenOf(job), `${MemoryBackend.tokenOf(job)}:${attempt}`, outcome);
  }

  /** Pumps the queue again at `at` (the earliest time a held-back job may start). */
  private wakeAt(at: number): void {
    if (!Number.isFinite(at) || at >= this.breakerWakeAt) return;
    clearTimeout(this.breakerWake);
    this.breakerWakeAt = at;
    this.breakerWake = setTimeout(
      () => {
        this.breakerWakeAt = Number.POSITIVE_INFINITY;
        this.pump();
      },
      Math.max(0, at - Date.now()),
    );
    this.breakerWake.unref();
  }

  /** How many attempts of `queue` may run at once: `concurrency` for handlers, the processor's own for processors. */
  private capacityOf(queue: string): number {
    return queue === DEFAULT_QUEUE ? this.options.concurrency : (this.processors.get(queue)?.concurrency ?? 1);
  }

  private assertRunning(): void {
    if (this.stopped) throw new JobQueueUnavailableError('The job queue is shutting down');
  }

  private waitForEvent(job: MemoryJob, waitMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return RESOLVED;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        job.readAt = Date.now(); // a reader waited until now
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        job.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      signal?.addEventListener('abort', done, { once: true });
      job.waiters.add(done);
    });
  }

  /** Queues the job's next attempt, after its fixed backoff (queued meanwhile, as BullMQ's delayed job reads). */
  private retry(job: MemoryJob): void {
    if (job.backoffMs <= 0) return this.schedule(job);
    job.state = 'queued';
    const due = Date.now() + job.backoffMs;
    // A timer can fire a little early (it counts from the event loop's cached time): wait out the rest.
    const wait = (): void => {
      job.retryTimer = undefined;
      if (job.final || this.stopped) return;
      const left = due - Date.now();
      if (left > 0) {
        job.retryTimer = setTimeout(wait, left);
      } else {
        this.schedule(job);
      }
    };
    // Not unref'd: a retry due is work still to do, as a running attempt is (stop() clears it).
    job.retryTimer = setTimeout(wait, job.backoffMs);
  }

  private schedule(job: MemoryJob): void {
    job.state = 'queued';
    if (job.priority === undefined) {
      this.waiting.push(job);
    } else {
      // Stable insert: after every job of the same or a better priority.
      let index = this.prioritized.length;
      while (index > 0 && this.prioritized[index - 1].priority! > job.priority) index--;
      this.prioritized.splice(index, 0, job);
    }
    this.pump();
  }

  private pump(): void {
    if (!this.accepting) return;
    for (const list of [this.waiting, this.prioritized]) {
      for (let index = 0; index < list.length;) {
        const job = list[index];
        if (job.final) {
          list.splice(index, 1); // cancelled while queued
          continue;
        }
        const running = this.running.get(job.queue) ?? 0;
        if (running >= this.capacityOf(job.queue)) {
          index++;
          continue;
        }
        // An open breaker holds the job back where it is: still queued, no attempt used.
        const admission = this.breakers.admit(job.name, MemoryBackend.tokenOf(job));
        if (!admission.admitted) {
          this.wakeAt(admission.retryAt);
          index++;
          continue;
        }
        list.splice(index, 1);
        this.running.set(job.queue, running + 1);
        void this.runAttempt(job).finally(() => {
          this.running.set(job.queue, (this.running.get(job.queue) ?? 1) - 1);
          this.pump();
        });
      }
    }
  }

  private async runAttempt(job: MemoryJob): Promise<void> {
    // A retry's `started` counts against the cap too; keep the last slot for the terminal event.
    if (job.events.length + 1 >= this.options.maxEventsPerJob) {
      this.settleBreaker(job, job.attempt + 1, 'release');
      return this.fail(job, new EventLimitExceededError(this.options.maxEventsPerJob));
    }
    const abort = new AbortController();
    job.abort = abort;
    job.attempt++;
    job.state = 'running';
    job.startedAt = Date.now();
    job.append('started', { attempt: job.attempt });
    this.meter?.sink?.appended(job.queue, 1);
    const attempt = job.attempt;
    // An attempt's events count only while its handler runs: a late emit of an attempt that
    // already ended (before a retry starts) must not land in the stream.
    let ended = false;
    const live = (): boolean => !ended && !job.final && job.attempt === attempt && !abort.signal.aborted;
    job.limitError = undefined;

    const context: JobContext = {
      id: job.id,
      name: job.name,
      data: job.data,
      attempt,
      signal: abort.signal,
      emit: (type: string, data?: unknown) => {
        const json = encodeHandlerEvent(type, data, this.options.maxEventBytes);
        if (live() && !this.appendWithinCap(job, type, json)) throw job.limitError;
        return RESOLVED;
      },
    };

    // The attempt's span, a child of the enqueue's, as on the bullmq backend: the work runs in it.
    const span = new AttemptSpan({ system: 'memory', queue: job.queue, name: job.name, id: job.id, attempt }, job.trace);
    await span.attempt(
      () => this.work(job, context, live),
      (outcome) => {
        ended = true;
        this.conclude(job, attempt, outcome, span);
      },
    );
  }

  /** Ends an attempt whose work returned or threw: the terminal event, or the retry. */
  private conclude(job: MemoryJob, attempt: number, outcome: AttemptOutcome, span: AttemptSpan): void {
    if (job.final || job.attempt !== attempt) {
      this.settleBreaker(job, attempt, 'release'); // a cancel says nothing about the work
      return; // cancelled meanwhile: the stream has its terminal event
    }
    job.abort = undefined;

    const verdict = judgeAttempt(outcome, {
      number: attempt,
      maxAttempts: job.maxAttempts,
      limitError: job.limitError,
      what: job.queue === DEFAULT_QUEUE ? 'handler' : 'processor',
      deferrable: false, // the in-memory Job refuses moveToDelayed and the like
    });
    if (verdict.kind !== 'completed') span.fail(verdict.error);
    // Before the terminal event: whoever sees the job end sees its breaker's new state.
    this.settleBreaker(job, attempt, breakerOutcomeOf(verdict));
    switch (verdict.kind) {
      case 'completed':
        job.result = JSON.parse(verdict.result);
        this.terminal(job, 'completed', { result: job.result });
        this.expireLater(job);
        return;
      case 'retry':
      case 'deferred':
        if (this.stopped) return this.fail(job, verdict.error);
        this.logger.warn(`Job ${job.id} (${job.name}) attempt ${attempt} failed, retrying: ${errorMessageOf(verdict.error)}`);
        this.retry(job);
        return;
      case 'failed':
        return this.fail(job, verdict.error);
    }
  }

  /**
   * Runs the attempt's work: the `@JobHandler` with `context`, or the queue's `@Processor` with an
   * in-memory BullMQ job whose `updateProgress` and `log` append `progress` and `log` events.
   */
  private async work(job: MemoryJob, context: JobContext, live: () => boolean): Promise<unknown> {
    if (job.queue === DEFAULT_QUEUE) return this.handlers.get(job.name)!(context);
    // As on Redis: at the cap a processor's call is not refused; the job fails at its end.
    const append = (type: 'progress' | 'log', data: unknown): void => {
      if (!live()) return;
      const event = encodeProcessorCall(type, data, this.options.maxEventBytes);
      if (event) this.appendWithinCap(job, event.type, event.json);
    };
    const bullJob = MemoryBullJob.create(
      {
        id: job.id,
        name: job.name,
        data: context.data,
        attempts: job.maxAttempts,
        backoffMs: job.backoffMs,
        priority: job.priority,
        attemptsMade: job.attempt - 1,
        timestamp: job.createdAt,
        queue: job.queue,
      },
      { progress: (value) => append('progress', value), log: (line) => append('log', { message: line }) },
    );
    return this.processors.get(job.queue)!.process(bullJob, undefined, context.signal);
  }

  /**
   * Appends an event unless it would take the slot kept for the terminal event; then the attempt
   * is aborted with the job's `limitError` (the job fails with it) and false is returned.
   */
  private appendWithinCap(job: MemoryJob, type: string, json: string): boolean {
    if (job.events.length + 1 >= this.options.maxEventsPerJob) {
      job.limitError ??= new EventLimitExceededError(this.options.maxEventsPerJob);
      job.abort?.abort(job.limitError);
      return false;
    }
    job.append(type, JSON.parse(json));
    this.meter?.sink?.appended(job.queue, 1);
    return true;
  }

  /** Writes the job's terminal event (and tells the meter). */
  private terminal(job: MemoryJob, state: 'completed' | 'failed' | 'cancelled', data: unknown): void {
    job.writeTerminal(state, data);
    this.meter?.sink?.appended(job.queue, 1);
    this.meter?.sink?.finished(job.queue, state);
  }

  private fail(job: MemoryJob, error: unknown): void {
    job.error = { message: errorMessageOf(error) };
    this.terminal(job, 'failed', { error: job.error });
    this.expireLater(job);
  }

  private expireLater(job: MemoryJob): void {
    clearTimeout(job.retryTimer); // ended while waiting for its next attempt
    job.expiry = setTimeout(() => {
      this.jobs.delete(MemoryBackend.keyOf(job.queue, job.id));
      // Followers waiting on it read again and find it gone, instead of waiting out their wait.
      for (const wake of job.waiters) wake();
    }, this.options.retentionMs);
    job.expiry.unref();
  }
}
