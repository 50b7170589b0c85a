import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';
import type { JobScripts } from './job-scripts.js';

/**
 * How long a new job's metadata lives until its enqueue is confirmed. It only has to outlast
 * BullMQ's add (which fails after the command connection's 10 s timeout); it is what removes the
 * metadata of an enqueue that stopped halfway.
 */
export const PROVISIONAL_META_TTL_MS = 5 * 60_000;

/** BullMQ's half of an enqueue. */
export interface BullMqAddition {
  /** Adds the job to BullMQ; called in the same tick as the metadata is written. */
  add(): Promise<unknown>;
  /** Removes the job from BullMQ again (when it is there and no worker holds it). */
  remove(): Promise<unknown>;
}

/**
 * Enqueues a job whose metadata (one hash, in the slot of the job's BullMQ keys) and BullMQ job are
 * written by two commands, BullMQ's add and ours, so that whatever stops it halfway (a lost reply,
 * a failed command, the process dying) leaves no job half made:
 *
 * 1. the metadata is stored with a provisional TTL ({@link PROVISIONAL_META_TTL_MS}) and, in the
 *    same tick on the same connection, BullMQ's add is sent: Redis runs them in this order (on
 *    Redis Cluster too: both keys are in one slot, so both go to one node's connection), and no
 *    worker sees the job before its metadata;
 * 2. once BullMQ has the job, the enqueue confirms it: the metadata loses the TTL, unless it ended
 *    meanwhile (then it keeps its retention). A worker that starts the job first does the same.
 *
 * Metadata never confirmed expires; a `@JobHandler` job BullMQ has without metadata fails when a
 * worker takes it, instead of running.
 */
export class JobEnqueue {
  constructor(
    private readonly scripts: JobScripts,
    private readonly provisionalTtlMs = PROVISIONAL_META_TTL_MS,
  ) {}

  /**
   * Stores `fields` as the metadata `meta` and adds the job to BullMQ. Resolves once both are in
   * and the metadata is confirmed; otherwise rejects, having taken back what it could (what it
   * could not expires).
   *
   * @throws JobQueueUnavailableError when the metadata was gone once BullMQ's add returned (it took longer than the provisional TTL).
   */
  async run(meta: string, fields: Record<string, string | number>, bull: BullMqAddition): Promise<void> {
    const created = this.create(meta, fields);
    let added: Promise<unknown>;
    try {
      added = bull.add();
    } catch (error) {
      added = Promise.reject(error as Error); // BullMQ checks some options synchronously
    }
    const [stored, queued] = await Promise.allSettled([created, added]);
    if (stored.status === 'rejected' || queued.status === 'rejected') {
      await this.takeBack(meta, bull);
      throw stored.status === 'rejected' ? stored.reason : (queued as PromiseRejectedResult).reason;
    }
    // Awaited, not sent on the side: the confirmation can fail (the command connection has no
    // offline queue) or find the metadata expired, and either must not end as an accepted job
    // whose metadata vanishes while it waits.
    let confirmed: boolean;
    try {
      confirmed = await this.confirm(meta);
    } catch (error) {
      await this.takeBack(meta, bull);
      throw error;
    }
    if (!confirmed) {
      await this.takeBack(meta, bull);
      throw new JobQueueUnavailableError(
        `The job was not enqueued: its metadata was gone when BullMQ's add returned (its provisional TTL of ${this.provisionalTtlMs} ms ran out, or Redis evicted it)`,
      );
    }
  }

  /**
   * Best effort, after a failed step: a failed or unanswered command may still have got in, so
   * both halves are taken back unless a worker started the job meanwhile (then it is whole and
   * runs). What cannot be taken back (Redis unreachable) ends anyway: unconfirmed metadata
   * expires, and a worker fails a job BullMQ has without it.
   */
  private async takeBack(meta: string, bull: BullMqAddition): Promise<void> {
    const withdrawn = await this.scripts.withdrawJob(meta).catch(() => undefined);
    if (withdrawn !== 'started') await bull.remove().catch(() => undefined);
  }

  /** The metadata alone (the first half of step 1), with its provisional TTL. */
  create(meta: string, fields: Record<string, string | number>): Promise<void> {
    return this.scripts.createJob(meta, this.provisionalTtlMs, fields);
  }

  /** Step 2 alone: true when the metadata is there (and now lasts), false when it expired. */
  confirm(meta: string): Promise<boolean> {
    return this.scripts.confirmJob(meta);
  }
}
