import type { ResolvedJobQueueOptions } from '../options/job-queue-module-options.js';
import type { AttemptVerdict } from './attempt-verdict.js';

/**
 * A circuit breaker of one job name: after `failures` failed attempts within `windowMs`, counted
 * across every worker of the backend, workers stop starting jobs of that name for `coolDownMs`;
 * then one job is let through as a probe, whose success closes the breaker and whose failure
 * opens it for another cool-down.
 *
 * A failed attempt is one whose handler or processor threw (or whose result the library refused:
 * not JSON, over the event cap), whether or not the job is retried. Cancellations, shutdown
 * hand-backs, BullMQ's control-flow errors (`DelayedError`, ...) and workers that died mid-run do
 * not count.
 */
export interface CircuitBreakerOptions {
  /** Failed attempts within `windowMs` that open the breaker (1..100000). */
  failures: number;
  /** The sliding window failures are counted in, in ms (1000..86400000). */
  windowMs: number;
  /** How long the breaker stays open before it lets one probe through, in ms (100..86400000). */
  coolDownMs: number;
}

/** `closed`: jobs start. `open`: none start until `openUntil`. `half-open`: one probe runs, the rest wait for its outcome. */
export type CircuitBreakerStatus = 'closed' | 'open' | 'half-open';

/** A breaker as {@link JobQueue.circuitBreakers} reports it (on `bullmq`, the state every worker shares). */
export interface CircuitBreakerState {
  /** The job name the breaker guards. */
  name: string;
  state: CircuitBreakerStatus;
  /** Failed attempts within the last `windowMs` (kept while open, reset when the breaker closes). */
  recentFailures: number;
  /**
   * Epoch ms until which an `open` breaker starts nothing. Once past, the next job of the name is
   * the probe (the breaker reports `open` until a worker takes it).
   */
  openUntil?: number;
  options: CircuitBreakerOptions;
}

/** Why a queued job waits (see {@link JobInfo.waitingFor}). */
export interface JobWaitingFor {
  /** The name of the open (or half-open) circuit breaker that holds the job back. */
  circuitBreaker: string;
  /** When the breaker lets its probe through; absent while a probe of another job runs. */
  until?: number;
}

/** Limits of {@link CircuitBreakerOptions}, checked at start. */
export const CIRCUIT_BREAKER_RULES: Record<keyof CircuitBreakerOptions, [number, number]> = {
  failures: [1, 100_000],
  windowMs: [1000, 24 * 60 * 60 * 1000],
  coolDownMs: [100, 24 * 60 * 60 * 1000],
};

/** The breaker of job name `name` under `options`, or undefined when it has none. */
export function circuitBreakerFor(
  options: Pick<ResolvedJobQueueOptions, 'circuitBreaker' | 'circuitBreakers'>,
  name: string,
): CircuitBreakerOptions | undefined {
  const own = Object.hasOwn(options.circuitBreakers, name) ? options.circuitBreakers[name] : undefined;
  if (own === false) return undefined;
  return own ?? options.circuitBreaker;
}

/** What an attempt's end tells a breaker: `release` gives a probe back without a verdict. */
export type BreakerOutcome = 'success' | 'failure' | 'release';

/** The breaker outcome of an attempt the work ended (not cancelled or handed back). */
export function breakerOutcomeOf(verdict: AttemptVerdict): BreakerOutcome {
  switch (verdict.kind) {
    case 'completed':
      return 'success';
    case 'failed':
    case 'retry':
      return 'failure';
    case 'deferred':
      return 'release';
  }
}

/** Whether a worker may start a job now. `probe`: it is the half-open breaker's one trial. */
export type BreakerAdmission =
  | { admitted: true; probe: boolean }
  /** Held back: try again at `retryAt` (epoch ms); `until` is the end of the cool-down when known. */
  | { admitted: false; retryAt: number; until?: number };
