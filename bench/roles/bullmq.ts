import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, Worker, createRedisBackend, type Job } from 'bullmq';
import { JobStreamsQueue, jobStreamsBackend } from 'nestjs-job-streams';
import { Redis } from 'ioredis';
import { now, sleep, waitFor } from '../support/clock.js';
import { EVENT_TYPE, Receipt, tokenData, type RunSummary } from '../support/payload.js';
import { heldJobs } from './held-jobs.js';
import { reportProgress, type ProgressValue } from './progress-processor.js';
import { DeliveryMeter, enqueueConcurrently, type RunParams } from '../support/role-helpers.js';
import type { RoleMethods } from '../support/rpc.js';

/**
 * Script calls a no-op job makes besides BullMQ's own, each an empty Lua script (`return 1`) on a
 * key of its own: what a design that keeps its per-job writes outside BullMQ's scripts pays for the
 * calls alone, whatever they write. `producer`: with 1, one awaited after BullMQ's add; with 2, also
 * one sent right before the add without waiting (this library's enqueue has both). `worker`: that
 * many awaited in the processor (this library's worker has 2, before and after the handler).
 */
export interface ExtraScriptCalls {
  producer: 0 | 1 | 2;
  worker: number;
}

/** A connection of its own with the empty script defined on it. */
function emptyScriptClient(redisUrl: string): Redis & { emptyScript(key: string): Promise<number> } {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: null });
  client.defineCommand('emptyScript', { numberOfKeys: 1, lua: 'return 1' });
  return client as Redis & { emptyScript(key: string): Promise<number> };
}

/** The queue of this role's jobs unless its config names another. */
const QUEUE = 'bench';

/**
 * Plain BullMQ, as a user would wire it without this library: a `Worker` whose processor reports
 * events with `job.updateProgress`, and a consumer that reads them through `QueueEvents` and
 * dispatches by job id.
 */
export async function bullmqRole(config: {
  redisUrl: string;
  worker: boolean;
  concurrency: number;
  /** BullMQ key prefix (default BullMQ's `bull`): a plain worker of a queue this library bridges uses the library's. */
  prefix?: string;
  /** The queue (default `bench`). */
  queue?: string;
  /** Empty script calls of a no-op job besides BullMQ's own (see {@link ExtraScriptCalls}). */
  extraScriptCalls?: ExtraScriptCalls;
  /**
   * True to run the queue and the worker on this library's `jobStreamsBackend()` alone (a
   * `JobStreamsQueue`, a plain `Worker` given the backend): each job's stream written inside
   * BullMQ's own scripts, without the library's worker side in the process.
   */
  jobStreams?: boolean;
}): Promise<RoleMethods> {
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const prefix = config.prefix ?? 'bull';
  const queueName = config.queue ?? QUEUE;
  const queue = config.jobStreams ? new JobStreamsQueue(queueName, { connection, prefix }) : new Queue(queueName, { connection, prefix });
  const extra = config.extraScriptCalls && emptyScriptClient(config.redisUrl);
  const fanOut = { running: 0, emitted: 0, stop: false };
  let worker: Worker | undefined;
  if (config.worker) {
    worker = new Worker(
      queueName,
      async (job: Job) => {
        if (job.name === 'held') {
          await heldJobs.hold();
          return null;
        }
        if (job.name !== 'fan-out') {
          // A gated job waits for its readers to be in place (see `releaseHeld`).
          if ((job.data as { gated?: boolean } | null)?.gated) await heldJobs.hold();
          if (extra && job.name === 'noop') {
            for (let call = 0; call < config.extraScriptCalls!.worker; call++) await extra.emptyScript(`${prefix}:x:${job.id}`);
            return null;
          }
          return reportProgress(job);
        }
        const interval = 1000 / job.data.rate;
        fanOut.running++;
        try {
          await sleep(Math.random() * interval);
          for (let i = 0; !fanOut.stop; i++) {
            await job.updateProgress({ type: EVENT_TYPE, data: tokenData(i) });
            fanOut.emitted++;
            await sleep(interval);
          }
        } finally {
          fanOut.running--;
        }
        return null;
      },
      { connection: new Redis(config.redisUrl, { maxRetriesPerRequest: null }), concurrency: config.concurrency, prefix },
      config.jobStreams ? jobStreamsBackend() : createRedisBackend,
    );
    await worker.waitUntilReady();
  }

  // The consumer's side: one QueueEvents per process, dispatching progress events by job id.
  let events: QueueEvents | undefined;
  const byJob = new Map<string, (progress: ProgressValue, at: number) => void>();
  // While recording (see `startRecording`): the progress of jobs nobody dispatches to yet, with receipt times.
  let recorded: Map<string, Array<[ProgressValue, number]>> | undefined;
  const queueEvents = async (): Promise<QueueEvents> => {
    if (events) return events;
    events = new QueueEvents(queueName, { connection: new Redis(config.redisUrl, { maxRetriesPerRequest: null }), prefix });
    events.on('progress', ({ jobId, data }) => {
      const at = now();
      const take = byJob.get(jobId);
      if (take) take(data as unknown as ProgressValue, at);
      else if (recorded) {
        const seen = recorded.get(jobId);
        if (seen) seen.push([data as unknown as ProgressValue, at]);
        else recorded.set(jobId, [[data as unknown as ProgressValue, at]]);
      }
    });
    await events.waitUntilReady();
    // Its first XREAD starts at '$': give it time to be in place before anything is emitted.
    await sleep(200);
    return events;
  };

  let follower: { delivered: number } | undefined;
  const meter = new DeliveryMeter(() => follower?.delivered ?? 0);

  return {
    async run(params: RunParams): Promise<RunSummary> {
      await queueEvents();
      const receipt = new Receipt(params.n);
      const jobId = `run-${now()}`;
      byJob.set(jobId, (progress, at) => receipt.add(progress.data, at));
      await queue.add(params.mode, { n: params.n, rate: params.rate }, { jobId });
      await receipt.wait(params.timeoutMs);
      byJob.delete(jobId);
      return receipt.summary(params.skip, params.keep);
    },

    /**
     * Starts keeping every job's progress as it comes (for a job another process enqueues, whose id
     * is not known yet), until {@link collectJob} takes one job's.
     */
    async startRecording(): Promise<void> {
      await queueEvents();
      recorded = new Map();
    },

    /** The progress of `jobId` since {@link startRecording}, timed on receipt; waits for `n` updates (or `timeoutMs`). Ends the recording. */
    async collectJob(params: { jobId: string; n: number; timeoutMs: number; skip?: number; keep?: boolean }): Promise<RunSummary> {
      const receipt = new Receipt(params.n);
      for (const [progress, at] of recorded?.get(params.jobId) ?? []) receipt.add(progress.data, at);
      recorded = undefined;
      byJob.set(params.jobId, (progress, at) => receipt.add(progress.data, at));
      await receipt.wait(params.timeoutMs);
      byJob.delete(params.jobId);
      return receipt.summary(params.skip, params.keep);
    },

    async fanOutStart(params: { k: number; rate: number }): Promise<string[]> {
      fanOut.stop = false;
      fanOut.emitted = 0;
      const ids: string[] = [];
      for (let i = 0; i < params.k; i += 50) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(50, params.k - i) }, () => queue.add('fan-out', { rate: params.rate })),
        );
        ids.push(...batch.map((job) => job.id!));
      }
      return ids;
    },
    fanOutStatus: () => ({ running: fanOut.running, emitted: fanOut.emitted }),
    async fanOutStop(): Promise<void> {
      fanOut.stop = true;
      await waitFor('fan-out processors to return', () => fanOut.running === 0, 30_000);
    },

    async follow(params: { jobId: string }): Promise<void> {
      await queueEvents();
      const state = { delivered: 0 };
      follower = state;
      byJob.set(params.jobId, () => state.delivered++);
    },
    mark: () => meter.mark(),
    measure: () => meter.measure(),

    enqueueNoop(params: { n: number; inFlight: number }): Promise<{ ms: number; ids: string[] }> {
      const calls = config.extraScriptCalls?.producer ?? 0;
      return enqueueConcurrently(params.n, params.inFlight, async () => {
        const key = `${prefix}:x:${randomUUID()}`;
        // Like a metadata write sent in the same tick as BullMQ's add, without waiting for it.
        const before = calls >= 2 ? extra!.emptyScript(key) : undefined;
        const id = (await queue.add('noop', null)).id!;
        await before;
        if (calls >= 1) await extra!.emptyScript(key);
        return id;
      });
    },

    /** Enqueues `n` held jobs (they run until released); returns their ids. */
    async enqueueHeld(params: { n: number }): Promise<string[]> {
      const jobs = await queue.addBulk(Array.from({ length: params.n }, () => ({ name: 'held', data: null })));
      return jobs.map((job) => job.id!);
    },
    heldRunning: () => heldJobs.running,
    releaseHeld: () => heldJobs.release(),

    async countCompleted(params: { ids: string[] }): Promise<number> {
      const states = await Promise.all(params.ids.map((id) => queue.getJobState(id)));
      return states.filter((state) => state === 'completed').length;
    },

    async close(): Promise<void> {
      await worker?.close();
      await events?.close();
      await queue.close();
      connection.disconnect();
      extra?.disconnect();
    },
  };
}
