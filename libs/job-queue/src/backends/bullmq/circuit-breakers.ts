import type { Logger } from '@nestjs/common';
import {
  circuitBreakerFor,
  type BreakerOutcome,
  type CircuitBreakerOptions,
  type CircuitBreakerState,
  type JobWaitingFor,
} from '../../contract/circuit-breaker.js';
import type { ResolvedJobQueueOptions } from '../../options/job-queue-module-options.js';
import type { JobScripts } from './job-scripts.js';
import type { RedisKeys } from './redis-keys.js';

/** Whether a job may start: with a ticket to report its outcome on, or held back until `retryAt`. */
export type BreakerGate = { admitted: true; ticket?: BreakerTicket } | { admitted: false; retryAt: number };

/**
 * An admitted job's duty to its breaker: report how the attempt ended, once. A probe's ticket
 * also renews the probe's lease while the attempt runs, so a long probe is not taken for a dead one.
 */
export class BreakerTicket {
  private settled = false;
  private readonly renewal?: NodeJS.Timeout;

  constructor(
    private readonly breakers: RedisCircuitBreakers,
    readonly name: string,
    readonly token: string,
    readonly probe: boolean,
  ) {
    if (probe) {
      this.renewal = setInterval(() => void breakers.renew(name, token), Math.max(100, Math.floor(breakers.leaseMs / 3)));
      this.renewal.unref();
    }
  }

  /** Reports the outcome of attempt `attempt` (a no-op after the first call; a closed breaker's success needs no call). */
  async settle(outcome: BreakerOutcome, attempt?: number): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    clearInterval(this.renewal);
    if (outcome !== 'failure' && !this.probe) return;
    await this.breakers.record(this.name, this.token, `${this.token}:${attempt ?? '-'}`, outcome);
  }
}

/**
 * The circuit breakers of the `bullmq` backend: their state lives in Redis (`breaker-*.lua`, keys
 * `<prefix>:{breaker:<name>}:*`), so every worker of the prefix counts the same failures and at
 * most one of them runs the half-open probe.
 */
export class RedisCircuitBreakers {
  /** Names a breaker was asked about in this process, for {@link states}. */
  private readonly seen = new Set<string>();

  /** Runs a worker's Redis calls through blips: set by the worker runtime to its attempts' retry. */
  retrying: <T>(operation: () => Promise<T>) => Promise<T> = (operation) => operation();

  constructor(
    private readonly scripts: JobScripts,
    private readonly keys: RedisKeys,
    private readonly options: ResolvedJobQueueOptions,
    private readonly logger: Logger,
  ) {}

  /** How long a probe holds its claim without renewal: BullMQ's lock, after which a dead worker's job runs elsewhere too. */
  get leaseMs(): number {
    return this.options.lockDurationMs;
  }

  configFor(name: string): CircuitBreakerOptions | undefined {
    return circuitBreakerFor(this.options, name);
  }

  /**
   * The job names with a breaker, as a worker's backend takes them (see `AttemptStarts.breakers`):
   * every name `except` those configured without one when a default breaker is set, else `only`
   * those configured with one.
   */
  namesWithBreakers(): { mode: 'only' | 'except'; names: string[] } {
    const own = Object.entries(this.options.circuitBreakers);
    return this.options.circuitBreaker
      ? { mode: 'except', names: own.filter(([, config]) => config === false).map(([name]) => name) }
      : { mode: 'only', names: own.filter(([, config]) => config !== false).map(([name]) => name) };
  }

  static tokenOf(queue: string, jobId: string): string {
    return `${queue}:${jobId}`;
  }

  /** May the job `jobId` of `queue`, named `name`, start now? */
  async admit(name: string, queue: string, jobId: string): Promise<BreakerGate> {
    const config = this.configFor(name);
    if (!config) return { admitted: true };
    this.seen.add(name);
    const token = RedisCircuitBreakers.tokenOf(queue, jobId);
    const reply = await this.retrying(() =>
      this.scripts.breakerAdmit(this.keys.breakerState(name), token, this.leaseMs, config.coolDownMs),
    );
    if (reply.status === 'wait') return { admitted: false, retryAt: reply.retryAt };
    return { admitted: true, ticket: new BreakerTicket(this, name, token, reply.status === 'probe') };
  }

  /** Renews a running probe's lease (admit again with its token); a failed renewal is retried at the next one. */
  async renew(name: string, token: string): Promise<void> {
    const config = this.configFor(name);
    if (!config) return;
    await this.scripts.breakerAdmit(this.keys.breakerState(name), token, this.leaseMs, config.coolDownMs).catch(() => undefined);
  }

  /** Records an attempt's outcome; a breaker that cannot be told (Redis gone for good) is logged, never fails the job. */
  async record(name: string, token: string, attemptKey: string, outcome: BreakerOutcome): Promise<void> {
    const config = this.configFor(name);
    if (!config) return;
    try {
      await this.retrying(() =>
        this.scripts.breakerRecord(this.keys.breakerState(name), this.keys.breakerFailures(name), outcome, token, attemptKey, config),
      );
    } catch (error) {
      this.logger.warn(`Could not record a ${outcome} in the circuit breaker of "${name}": ${(error as Error).message}`);
    }
  }

  /** Why the queued job `jobId` of `queue`, named `name`, waits, when its breaker holds it back. */
  async waitingFor(name: string, queue: string, jobId: string): Promise<JobWaitingFor | undefined> {
    const config = this.configFor(name);
    if (!config) return undefined;
    const state = await this.scripts.breakerRead(this.keys.breakerState(name), this.keys.breakerFailures(name), config.windowMs);
    if (state.state === 'open') return { circuitBreaker: name, until: state.openUntil };
    if (state.state === 'half-open' && state.probe !== RedisCircuitBreakers.tokenOf(queue, jobId)) return { circuitBreaker: name };
    return undefined;
  }

  /** The shared state of the breakers of `names`, of the names given their own, and of every name asked about here. */
  async states(names: Iterable<string>): Promise<CircuitBreakerState[]> {
    const all = [...new Set([...names, ...this.seen, ...Object.keys(this.options.circuitBreakers)])].sort();
    const configured = all.flatMap((name) => {
      const config = this.configFor(name);
      return config ? [{ name, config }] : [];
    });
    return Promise.all(
      configured.map(async ({ name, config }) => {
        const read = await this.scripts.breakerRead(this.keys.breakerState(name), this.keys.breakerFailures(name), config.windowMs);
        const state: CircuitBreakerState = { name, state: read.state, recentFailures: read.recentFailures, options: { ...config } };
        if (read.state === 'open' && read.openUntil !== undefined) state.openUntil = read.openUntil;
        return state;
      }),
    );
  }
}
