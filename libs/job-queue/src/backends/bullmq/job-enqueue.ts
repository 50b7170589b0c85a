import type { JobScripts } from './job-scripts.js';
import { JobStreamsBackend } from './job-streams-backend.js';
import type { ReplicaAcks } from './replica-acks.js';

/** BullMQ's half of an enqueue. */
export interface BullMqAddition {
  /** Adds the job through a BullMQ `Queue` whose backend {@link jobStreamsBackend} made. */
  add(): Promise<unknown>;
  /** Removes the job from BullMQ again (when it is there and no worker holds it). */
  remove(): Promise<unknown>;
}

/**
 * Enqueues a job as one script: BullMQ's own add and the job's metadata, written together (see
 * {@link JobStreamsBackend.addingJob}; both keys lie in one slot, on Redis Cluster too). No worker
 * ever sees the job without its metadata, and a refused add writes none. An add sent again after a
 * reconnect (ioredis resends unanswered commands) finds both there and changes nothing.
 *
 * What is left to take back is an add whose outcome is unknown (it failed on the way, or replica
 * acks did not confirm it in time): the enqueue then removes both halves unless a worker started
 * the job meanwhile, and rejects.
 */
export class JobEnqueue {
  constructor(
    private readonly scripts: JobScripts,
    /** Replica acks (`redis.replicaAcks`): an enqueue counts as done once replicas have it. */
    private readonly acks?: ReplicaAcks,
  ) {}

  /**
   * Stores `fields` as the metadata `meta` and adds the job to BullMQ, in one script. Resolves once
   * both are in (and replicated, with replica acks); otherwise rejects, having taken back what it
   * could.
   */
  async run(meta: string, fields: Record<string, string | number>, bull: BullMqAddition): Promise<void> {
    try {
      await JobStreamsBackend.addingJob(meta, fields, () => bull.add());
      // The WAIT goes to the node of the metadata, which holds BullMQ's job too.
      await this.acks?.after(meta);
    } catch (error) {
      await this.takeBack(meta, bull);
      throw error;
    }
  }

  /**
   * Best effort, after a failed step: a failed or unanswered command may still have got in, so
   * both halves are taken back unless a worker started the job meanwhile (then it is whole and
   * runs). What cannot be taken back (Redis unreachable) stays a whole job, which runs.
   */
  private async takeBack(meta: string, bull: BullMqAddition): Promise<void> {
    const withdrawn = await this.scripts.withdrawJob(meta).catch(() => undefined);
    if (withdrawn !== 'started') await bull.remove().catch(() => undefined);
  }
}
