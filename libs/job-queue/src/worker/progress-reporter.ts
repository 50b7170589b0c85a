import type { Job } from 'bullmq';

/** At most one BullMQ progress update per job in this time. */
const PROGRESS_INTERVAL_MS = 100;

/** What BullMQ's job progress shows: the last event appended to the job's stream. */
export interface EventProgress {
  eventId: string;
  type: string;
  /** Handler events appended by this attempt so far. */
  events: number;
}

/**
 * Mirrors a running job's last appended event into BullMQ's job progress, so that BullMQ tools see
 * it move, at most every {@link PROGRESS_INTERVAL_MS} (the latest value wins). One update per
 * appended batch would double the Redis commands of a job that emits slowly (every event is a
 * batch of one then), for a value that dashboards only poll.
 */
export class ProgressReporter {
  private pending?: EventProgress;
  private timer?: NodeJS.Timeout;
  private sentAt = -Infinity;

  constructor(private readonly job: Job) {}

  report(progress: EventProgress): void {
    this.pending = progress;
    if (this.timer) return;
    const wait = this.sentAt + PROGRESS_INTERVAL_MS - Date.now();
    if (wait <= 0) this.send();
    else this.timer = setTimeout(() => this.send(), wait).unref();
  }

  /** Sends the pending value at once: the attempt appends nothing more. */
  flush(): void {
    clearTimeout(this.timer);
    this.send();
  }

  private send(): void {
    this.timer = undefined;
    const progress = this.pending;
    if (!progress) return;
    this.pending = undefined;
    this.sentAt = Date.now();
    void this.job.updateProgress({ ...progress }).catch(() => undefined);
  }
}
