import type { JobQueue } from 'nestjs-job-streams';
import { now } from '../support/clock.js';

/**
 * Follows one job from its first event and records when each of its `started` events (one per
 * attempt) reached this process, on the shared monotonic clock ({@link now}).
 */
export class AttemptStarts {
  private readonly seen = new Map<number, number>();
  private readonly waiters = new Map<number, Array<{ resolve(at: number): void; reject(error: Error): void }>>();
  private readonly stop = new AbortController();
  private failure?: Error;

  constructor(queue: JobQueue, jobId: string, owner: string) {
    void (async () => {
      for await (const page of queue.followPages(jobId, { owner, signal: this.stop.signal })) {
        const at = now();
        for (const event of page) {
          if (event.type !== 'started') continue;
          const { attempt } = event.data as { attempt: number };
          this.seen.set(attempt, at);
          for (const waiter of this.waiters.get(attempt) ?? []) waiter.resolve(at);
          this.waiters.delete(attempt);
        }
      }
    })().catch((error: Error) => {
      this.failure = error;
      for (const waiting of this.waiters.values()) for (const waiter of waiting) waiter.reject(error);
      this.waiters.clear();
    });
  }

  /** When attempt `attempt` started, as seen here; rejects after `timeoutMs` without it. */
  at(attempt: number, timeoutMs: number): Promise<number> {
    const seen = this.seen.get(attempt);
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`attempt ${attempt} did not start within ${timeoutMs} ms`)), timeoutMs);
      const waiting = this.waiters.get(attempt) ?? [];
      waiting.push({
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.waiters.set(attempt, waiting);
    });
  }

  close(): void {
    this.stop.abort();
  }
}
