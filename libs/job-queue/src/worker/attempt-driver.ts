import { DelayedError, type Job } from 'bullmq';
import type { AttemptOutcome } from '../contract/attempt-verdict.js';
import type { BreakerTicket, RedisCircuitBreakers } from '../backends/bullmq/circuit-breakers.js';
import type { JobScripts, NewJobMeta } from '../backends/bullmq/job-scripts.js';
import type { JobStreamsBackend } from '../backends/bullmq/job-streams-backend.js';
import type { RedisKeys } from '../backends/bullmq/redis-keys.js';
import { AttemptSpan } from '../tracing/job-tracing.js';
import type { AttemptLifecycle, AttemptStart, RunningAttempt } from './attempt-lifecycle.js';
import type { AppendedEvent } from './event-appender.js';

/** What one kind of work (a `@JobHandler`, a processor) adds to the attempt {@link AttemptDriver} runs. */
export interface AttemptWork {
  queue: string;
  /** Names the work in messages: `handler`, `processor`. */
  what: string;
  /** Metadata for a job that has none (a processor's queue, added with plain BullMQ). */
  create?: NewJobMeta;
  /** Called after each batch of the attempt's events that appended something. */
  onFlushed?: (last: AppendedEvent) => void;
  /** What BullMQ records for a job whose attempt did not start (it ended already, or has no metadata): returns it, or throws. */
  notStarted(started: Exclude<AttemptStart, { status: 'ok' }>): unknown;
  /** Prepares the started attempt's work (its events' route, its cancel) and returns it: what runs inside the attempt's span. */
  begin(running: RunningAttempt): () => Promise<unknown>;
  /**
   * Runs once the work returned or threw, before its end is judged: flushes what the work produced,
   * and may end the attempt itself (`{ value }` is what BullMQ records, or it throws) instead of
   * the verdict ({@link AttemptLifecycle.conclude}), which `undefined` leaves to run.
   */
  after(running: RunningAttempt, outcome: AttemptOutcome, ticket: BreakerTicket | undefined): Promise<{ value: unknown } | undefined>;
}

/**
 * Runs one attempt of a BullMQ job in this process, for `@JobHandler` jobs and processors alike:
 * the circuit breaker's gate (a job it does not admit goes back to BullMQ unstarted, delayed), the
 * start (`started`, taken from BullMQ's move to active when the worker's backend started it
 * there), the attempt's span, the work, then its end: the terminal event (with BullMQ's move to
 * finished when the backend composes) or the retry. What differs between the kinds of work is in
 * {@link AttemptWork}.
 */
export class AttemptDriver {
  constructor(
    private readonly lifecycle: AttemptLifecycle,
    private readonly breakers: RedisCircuitBreakers,
    private readonly scripts: JobScripts,
    private readonly keys: RedisKeys,
  ) {}

  /**
   * Runs an attempt of `job`, which BullMQ gave the worker holding lock `token`. `composing`: the
   * worker's backend when it composes (the start comes with BullMQ's move to active, the end goes
   * with its move to finished). Resolves to what BullMQ records, or throws what BullMQ should see.
   */
  async run(job: Job, token: string | undefined, composing: JobStreamsBackend | undefined, work: AttemptWork): Promise<unknown> {
    // Started already when BullMQ moved the job to active (the backend did it in the same script).
    const startedWithMove = composing?.takeStart(job);
    const gate = await this.breakers.admit(job.name, work.queue, job.id!);
    if (!gate.admitted) {
      if ((await this.lifecycle.retrying(() => this.scripts.holdJob(this.keys.meta(work.queue, job.id!), work.create))) === 'ok') {
        await job.moveToDelayed(gate.retryAt, token);
        throw new DelayedError();
      }
      // Cancelled meanwhile, or without metadata: the start below finds that and runs nothing.
    }
    const ticket = gate.admitted ? gate.ticket : undefined;
    try {
      const started = await this.lifecycle.start(work.queue, job, { create: work.create, onFlushed: work.onFlushed, startedWithMove });
      if (started.status !== 'ok') return work.notStarted(started);
      return await this.attempt(job, token, composing, work, started.attempt, ticket);
    } finally {
      // Whatever ended the attempt without a verdict (a Redis failure, the event cap at start) gives a probe back.
      await ticket?.settle('release');
    }
  }

  private async attempt(
    job: Job,
    token: string | undefined,
    composing: JobStreamsBackend | undefined,
    work: AttemptWork,
    running: RunningAttempt,
    ticket: BreakerTicket | undefined,
  ): Promise<unknown> {
    const run = work.begin(running);
    // The attempt's span, a child of the enqueue's (on whichever worker): inline work runs in it
    // (a sandboxed processor runs in another process, which the context does not reach).
    const span = new AttemptSpan(
      { system: 'bullmq', queue: work.queue, name: job.name, id: job.id!, attempt: running.attempt },
      running.trace,
    );
    return span.attempt(run, async (outcome) => {
      const ended = await work.after(running, outcome, ticket);
      if (ended) return ended.value;
      // With a composing backend the terminal event goes with BullMQ's move of the job, in one script.
      const finishThrough = composing && token ? { backend: composing, token } : undefined;
      return this.lifecycle.conclude(job, running, outcome, work.what, ticket, finishThrough);
    });
  }
}
