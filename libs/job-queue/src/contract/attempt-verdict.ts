import { EventLimitExceededError } from '../errors/event-limit-exceeded.error.js';

/** How the work of an attempt (a handler or a processor) ended. */
export type AttemptOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** What the end of an attempt means for its job, decided the same way on every backend. */
export type AttemptVerdict =
  /** The job completes with `result` (JSON text). */
  | { kind: 'completed'; result: string }
  /**
   * The job fails for good with `error`. `ours` when the library failed it (event cap reached,
   * result not JSON) rather than the work's own error.
   */
  | { kind: 'failed'; error: unknown; ours: boolean }
  /** Another attempt follows. */
  | { kind: 'retry'; error: unknown }
  /** BullMQ control flow (delayed, rate limited, waiting for children): the job runs again later, no attempt used. */
  | { kind: 'deferred'; error: unknown };

/**
 * Errors a processor throws to tell BullMQ "not now": BullMQ runs the job again later without
 * counting a failure, so they end no stream.
 */
const CONTROL_FLOW_ERRORS = new Set(['DelayedError', 'RateLimitError', 'WaitingError', 'WaitingChildrenError']);

/** True for BullMQ's "not now" errors (by name, so that it holds across package copies). */
export function isControlFlowError(error: unknown): boolean {
  return error instanceof Error && CONTROL_FLOW_ERRORS.has(error.name);
}

/** True for an error after which BullMQ does not retry (by name, so that it holds across package copies). */
export function isUnrecoverable(error: unknown): boolean {
  return error instanceof Error && error.name === 'UnrecoverableError';
}

/**
 * Decides how an attempt ends: the event cap first (a job that reached it fails, whatever its
 * work returned), then a result JSON cannot carry, then BullMQ's retry rules (`attempts`,
 * `UnrecoverableError`, control-flow errors).
 */
export function judgeAttempt(
  outcome: AttemptOutcome,
  attempt: {
    /** 1-based number of the attempt that ended. */
    number: number;
    maxAttempts: number;
    /** Set when the attempt reached the event cap. */
    limitError?: EventLimitExceededError;
    /** Names the work in messages ("handler", "processor"). */
    what: string;
    /** False where nothing can defer a job (the memory backend): control-flow errors count as failures. */
    deferrable?: boolean;
  },
): AttemptVerdict {
  if (attempt.limitError) return { kind: 'failed', error: attempt.limitError, ours: true };
  if (outcome.ok) {
    let result: string | undefined;
    let problem = 'it has no JSON form';
    try {
      result = JSON.stringify(outcome.value ?? null);
    } catch (error) {
      problem = (error as Error).message;
    }
    // A function or a symbol gives no JSON text at all (and no error).
    if (result !== undefined) return { kind: 'completed', result };
    const failure = new Error(`The ${attempt.what}'s result is not JSON-serializable: ${problem}`);
    return { kind: 'failed', error: failure, ours: true };
  }
  const { error } = outcome;
  if (attempt.deferrable !== false && isControlFlowError(error)) return { kind: 'deferred', error };
  if (isUnrecoverable(error) || attempt.number >= Math.max(1, attempt.maxAttempts)) return { kind: 'failed', error, ours: false };
  return { kind: 'retry', error };
}
