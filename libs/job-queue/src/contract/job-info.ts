import type { JobWaitingFor } from './circuit-breaker.js';

/** States of a job. `completed`, `failed` and `cancelled` are final. */
export type JobState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

/** A snapshot of a job, as returned by {@link JobQueue.getJob} and {@link JobQueue.enqueue}. */
export interface JobInfo {
  id: string;
  /** The handler name the job was enqueued for. */
  name: string;
  state: JobState;
  /** The current (or last) attempt, 1-based; 0 while the job has never started. */
  attempt: number;
  /** How many attempts the job may use in all. */
  maxAttempts: number;
  /** Epoch milliseconds. */
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** The handler's return value, once `completed`. */
  result?: unknown;
  /** Why the job failed, once `failed`. */
  error?: { message: string };
  /**
   * Set while the job is `queued` and a circuit breaker of its name holds it back (open, or
   * half-open with another job as its probe): the job waits without starting or using an attempt.
   */
  waitingFor?: JobWaitingFor;
}

/** Final states. */
export function isFinalState(state: JobState): boolean {
  return state === 'completed' || state === 'failed' || state === 'cancelled';
}
