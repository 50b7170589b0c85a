import { randomUUID } from 'node:crypto';
import type { Logger } from '@nestjs/common';
import { UnrecoverableError, type Job } from 'bullmq';
import { judgeAttempt, type AttemptOutcome } from '../contract/attempt-verdict.js';
import { breakerOutcomeOf } from '../contract/circuit-breaker.js';
import type { BreakerTicket } from '../backends/bullmq/circuit-breakers.js';
import { errorMessageOf } from '../contract/encode-event.js';
import { EventLimitExceededError } from '../errors/event-limit-exceeded.error.js';
import type { ResolvedJobQueueOptions } from '../options/job-queue-module-options.js';
import { EventAppender, type AppendedEvent } from './event-appender.js';
import { finishJobCall, type JobScripts, type NewJobMeta, type StartAttemptReply } from '../backends/bullmq/job-scripts.js';
import type { JobStreamsBackend, KeptStart } from '../backends/bullmq/job-streams-backend.js';
import type { RedisKeys } from '../backends/bullmq/redis-keys.js';
import { tracedFinish, type TraceCarrier } from '../tracing/job-tracing.js';
import { terminalOf } from '../backends/bullmq/terminal-event.js';

const RESOLVED = Promise.resolve();

/**
 * One attempt of a job that runs in this process. Every event it produces (a handler's `emit`, a
 * processor's `updateProgress` and `log`) goes through {@link append}: in order, batched, under
 * the per-job cap (one slot always stays free for the terminal event).
 */
export class RunningAttempt {
  /** Fires when the job is cancelled, the attempt is superseded, or the cap is reached. */
  readonly abort = new AbortController();
  /** Set once the attempt reached `maxEventsPerJob`: the job fails with it. */
  limitError?: EventLimitExceededError;
  /** The trace context the job was enqueued in, when it was: the parent of the attempt's span. */
  trace?: TraceCarrier;
  readonly appender: EventAppender;

  constructor(
    readonly queue: string,
    readonly jobId: string,
    readonly attempt: number,
    /** Events the job's stream holds already (its `started` included). */
    private eventCount: number,
    private readonly maxEvents: number,
    appenderFor: (attempt: RunningAttempt) => EventAppender,
  ) {
    this.appender = appenderFor(this);
  }

  private watchdog?: NodeJS.Timeout;

  /**
   * Runs `abandoned` now and every `everyMs` until it says the job is over: then the attempt is
   * aborted (the job was cancelled as abandoned, or ended otherwise).
   */
  watch(abandoned: () => Promise<boolean>, everyMs: number): void {
    const check = async (): Promise<void> => {
      try {
        if (!(await abandoned())) return;
      } catch {
        return; // Redis is away: checked again next time
      }
      this.stopWatching();
      if (!this.abort.signal.aborted) this.abort.abort(new Error('Job abandoned: no client read it'));
    };
    this.watchdog = setInterval(() => void check(), everyMs);
    this.watchdog.unref();
    void check();
  }

  stopWatching(): void {
    clearInterval(this.watchdog);
  }

  /** Ends the attempt's writing: stops its watch and flushes every event it produced. */
  async close(): Promise<void> {
    this.stopWatching();
    await this.appender.close();
  }

  /** True when the stream refuses this attempt's events: the job reached a final state (cancelled) or a newer run took over. */
  get refused(): boolean {
    return this.appender.stopped === 'final' || this.appender.stopped === 'stale';
  }

  /**
   * Appends one event (its data already validated JSON text). Resolves at once unless too many
   * are unflushed. @throws EventLimitExceededError when the cap is reached (and aborts the attempt).
   */
  append(type: string, json: string): Promise<void> {
    if (this.limitError) throw this.limitError;
    if (this.appender.stopped) return RESOLVED;
    if (this.eventCount + 1 >= this.maxEvents) {
      this.limitError = new EventLimitExceededError(this.maxEvents);
      this.abort.abort(this.limitError);
      throw this.limitError;
    }
    this.eventCount++;
    return this.appender.push(type, json);
  }
}

/** What {@link AttemptLifecycle.start} found. */
export type AttemptStart =
  | { status: 'ok'; attempt: RunningAttempt }
  /** The job is in a final state already (cancelled before it ran, or completed before BullMQ recorded it). */
  | { status: 'final'; state: string; result: string | undefined }
  /** It has no metadata (never confirmed, or expired) and may not get one: nothing to run. */
  | { status: 'gone' };

/**
 * The life of one attempt of a BullMQ job in this process, shared by `@JobHandler` jobs and by the
 * jobs of bridged `@nestjs/bullmq` processors: `started`, the attempt's events, then exactly one
 * terminal event (or the retry), each written so that a retried Redis call never doubles it.
 */
export class AttemptLifecycle {
  constructor(
    private readonly scripts: JobScripts,
    private readonly keys: RedisKeys,
    private readonly options: ResolvedJobQueueOptions,
    private readonly logger: Logger,
    /** True once retrying is pointless (the process is shutting down past its grace period). */
    private readonly abandoned: () => boolean,
  ) {}

  /**
   * Starts an attempt of `job` in `queue`: appends `started` unless the job is in a final state. With
   * `create`, a job without metadata (added with plain BullMQ) gets it, without an owner.
   *
   * @throws UnrecoverableError when a retry would leave no slot for the terminal event (the job is failed first).
   */
  async start(
    queue: string,
    job: Job,
    options: {
      create?: NewJobMeta;
      onFlushed?: (last: AppendedEvent) => void;
      /**
       * The start made inside BullMQ's move of the job to active, when the worker's backend
       * started the attempt there (see {@link JobStreamsBackend.startAttempts}): then no call of
       * its own is made (with replica acks, unless the replicas do not confirm it).
       */
      startedWithMove?: KeptStart;
    } = {},
  ): Promise<AttemptStart> {
    const id = job.id!;
    const meta = this.keys.meta(queue, id);
    const events = this.keys.events(queue, id);
    const startAlone = (runId: string): Promise<StartAttemptReply> =>
      this.retrying(() => this.scripts.startAttempt(meta, events, Date.now(), this.options.maxEventsPerJob, runId, options.create));
    const kept = options.startedWithMove?.reply[0] !== 'unstarted' ? options.startedWithMove : undefined;
    let started = kept ? this.scripts.startAttemptReply(events, kept.reply) : await startAlone(randomUUID());
    if (kept && started.status === 'ok' && this.scripts.waitsForReplicas) {
      try {
        await this.scripts.confirmWriteElsewhere(meta);
      } catch {
        // The replicas did not confirm the start: made again by a call of its own with the same
        // run id, which answers the same when the first one is there (and waits for replicas).
        started = await startAlone(kept.runId);
      }
    }
    if (started.status === 'limit') {
      const limitError = new EventLimitExceededError(this.options.maxEventsPerJob);
      await this.writeTerminal(queue, job, 'failed', { error: limitError });
      throw new UnrecoverableError(limitError.message);
    }
    if (started.status !== 'ok') return started;
    const attempt = new RunningAttempt(
      queue,
      id,
      started.attempt,
      started.eventCount,
      this.options.maxEventsPerJob,
      (running) =>
        new EventAppender({
          scripts: this.scripts,
          metaKey: this.keys.meta(queue, id),
          eventsKey: this.keys.events(queue, id),
          attempt: started.attempt,
          maxEvents: this.options.maxEventsPerJob,
          logger: this.logger,
          abandoned: this.abandoned,
          onStop: (reason) => {
            if (reason === 'limit') running.limitError ??= new EventLimitExceededError(this.options.maxEventsPerJob);
            running.abort.abort(running.limitError ?? new Error(reason === 'final' ? 'Job cancelled' : 'Attempt superseded'));
          },
          onFlushed: options.onFlushed,
        }),
    );
    attempt.trace = started.trace;
    if (started.abandonAfterMs) {
      const meta = this.keys.meta(queue, id);
      const events = this.keys.events(queue, id);
      attempt.watch(
        async () => (await this.scripts.abandonUnread(meta, events, this.options.retentionMs)) !== 'read',
        Math.max(250, Math.floor(started.abandonAfterMs / 4)),
      );
    }
    return { status: 'ok', attempt };
  }

  /**
   * Ends an attempt whose work returned or threw, once all its events are in: writes the terminal
   * event (or marks the job queued for BullMQ's retry) and returns what BullMQ should record, or
   * throws what BullMQ should see. `what` names the work in messages ("handler", "processor").
   * `breaker`: the job's circuit breaker ticket, told the outcome before the terminal event is
   * written (whoever sees the job end sees the breaker's new state).
   */
  async conclude(
    job: Job,
    running: RunningAttempt,
    outcome: AttemptOutcome,
    what: string,
    breaker?: BreakerTicket,
    /**
     * The worker's backend, when it composes: the terminal event then goes to Redis in one script
     * with BullMQ's move of the job to completed or failed, which BullMQ sends once this returns
     * (see {@link JobStreamsBackend.finishWith}), instead of in a call of its own before it;
     * `token` is the lock of the run (BullMQ's), whose move alone writes it.
     */
    finishThrough?: { backend: JobStreamsBackend; token: string },
  ): Promise<unknown> {
    await running.close();
    const { queue, jobId: id, attempt } = running;
    if (running.refused) {
      await breaker?.settle('release', attempt); // a cancel says nothing about the work
      return undefined; // cancelled meanwhile, or superseded: its end is not ours to write
    }
    const verdict = judgeAttempt(outcome, {
      number: job.attemptsMade + 1,
      maxAttempts: job.opts.attempts ?? 1,
      limitError: running.limitError,
      what,
    });
    if (breaker) {
      let told = breakerOutcomeOf(verdict);
      // A handler that throws because its job was cancelled meanwhile did not fail: its appender
      // may not have learnt of the cancel (nothing was appended after it), the job's state has.
      if (told === 'failure' && (await this.retrying(() => this.scripts.finalState(this.keys.meta(queue, id)))) === 'cancelled') {
        told = 'release';
      }
      await breaker.settle(told, attempt);
    }
    switch (verdict.kind) {
      case 'completed':
        await this.endAttempt(queue, job, 'completed', { result: verdict.result }, attempt, finishThrough);
        return outcome.ok ? outcome.value : undefined;
      case 'failed':
        await this.endAttempt(queue, job, 'failed', { error: verdict.error }, attempt, finishThrough);
        // A failure of the library's making (cap, result) must not be retried by BullMQ.
        if (verdict.ours) throw new UnrecoverableError(errorMessageOf(verdict.error));
        break;
      case 'retry':
        if ((await this.requeue(queue, running.jobId, attempt)) !== 'ok') return undefined; // cancelled meanwhile: no retry
        break;
      case 'deferred':
        break; // BullMQ runs it again later: the stream goes on
    }
    throw verdict.error instanceof Error ? verdict.error : new Error(errorMessageOf(verdict.error));
  }

  /** Marks the job queued again (BullMQ will run it once more); `'final'` when it reached a final state meanwhile. */
  requeue(queue: string, id: string, attempt: number): Promise<'ok' | 'final' | 'stale'> {
    return this.retrying(() => this.scripts.requeueJob(this.keys.meta(queue, id), attempt));
  }

  /**
   * Ends an attempt with its terminal event: written now, or, with `finishThrough`, handed to the
   * worker's backend to go with BullMQ's move of the job (not awaited: BullMQ sends the move once
   * the attempt returns; the `finish` span lasts until the move is answered).
   */
  private async endAttempt(
    queue: string,
    job: Pick<Job, 'id' | 'name'>,
    state: 'completed' | 'failed',
    outcome: { result: string } | { error: unknown },
    attempt: number,
    finishThrough: { backend: JobStreamsBackend; token: string } | undefined,
  ): Promise<void> {
    if (!finishThrough) return this.writeTerminal(queue, job, state, outcome, attempt);
    const { data, field } = terminalOf(outcome);
    const id = job.id!;
    const events = this.keys.events(queue, id);
    const call = finishJobCall(this.keys.meta(queue, id), events, state, data, Date.now(), this.options.retentionMs, field, attempt);
    const finished = tracedFinish({ system: 'bullmq', queue, name: job.name, id, attempt, state }, async () => {
      const reply = await finishThrough.backend.finishWith(id, finishThrough.token, call);
      // Replaced by a later end of the job, or refused with BullMQ's move (BullMQ runs the job
      // again, or records another outcome, whose end its failure handler writes): nothing to do.
      if (!reply || reply[0] === 'refused') return;
      // BullMQ moved the job but the end failed in Redis: written by a call of its own.
      if (reply[0] === 'error') return this.writeTerminal(queue, job, state, outcome, attempt);
      this.scripts.finishJobReply(events, state, reply);
      if (!this.scripts.waitsForReplicas) return;
      try {
        await this.scripts.confirmWriteElsewhere(call.keys[0]);
      } catch {
        // The replicas did not confirm the end: written again by a call of its own (idempotent).
        return this.writeTerminal(queue, job, state, outcome, attempt);
      }
    });
    finished.catch((error: unknown) => this.logger.warn(`Could not end job ${id} of queue ${queue}: ${errorMessageOf(error)}`));
  }

  /**
   * Writes the terminal event of an attempt (retried through Redis blips; idempotent), in a
   * `finish` span (a child of the attempt's when called inside it). `result` is JSON text.
   */
  async writeTerminal(
    queue: string,
    job: Pick<Job, 'id' | 'name'>,
    state: 'completed' | 'failed',
    outcome: { result: string } | { error: unknown },
    attempt?: number,
  ): Promise<void> {
    const { data, field } = terminalOf(outcome);
    const id = job.id!;
    await tracedFinish({ system: 'bullmq', queue, name: job.name, id, attempt, state }, () =>
      this.retrying(() =>
        this.scripts.finishJob(
          this.keys.meta(queue, id),
          this.keys.events(queue, id),
          state,
          data,
          Date.now(),
          this.options.retentionMs,
          field,
          attempt,
        ),
      ),
    );
  }

  /** Runs a Redis operation until it succeeds (Redis blips), unless the process gave up on its work. */
  async retrying<T>(operation: () => Promise<T>): Promise<T> {
    for (let tries = 0; ; tries++) {
      try {
        return await operation();
      } catch (error) {
        if (tries >= 100 || this.abandoned()) throw error;
        if (tries % 20 === 0) this.logger.warn(`Redis command failed (${(error as Error).message}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** Math.min(tries, 5), 1000)));
      }
    }
  }
}
