import 'reflect-metadata';
import { Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { JobQueue, JobQueueModule, JobQueueWorker, isTerminalEventType, type JobQueueModuleOptions } from 'nestjs-job-streams';
import { now, waitFor } from '../support/clock.js';
import { Receipt, type RunSummary, type TokenData } from '../support/payload.js';
import { DeliveryMeter, enqueueConcurrently, type RunParams } from '../support/role-helpers.js';
import type { RoleMethods } from '../support/rpc.js';
import { AttemptStarts } from './attempt-starts.js';
import { BENCH_JOBS, BenchHandlers, fanOutState } from './bench-handlers.js';
import { heldJobs } from './held-jobs.js';
import { reportProgress, type ProgressValue } from './progress-processor.js';
import { ReceivedEvents, type StreamComparison } from './received-events.js';

@Module({})
class BenchAppModule {
  static register(options: JobQueueModuleOptions): DynamicModule {
    return { module: BenchAppModule, imports: [JobQueueModule.forRoot(options)], providers: [BenchHandlers] };
  }
}

export interface LibraryConfig {
  backend: 'bullmq' | 'memory';
  redisUrl?: string;
  /** Redis Cluster: its nodes, used instead of `redisUrl` (the prefix must then carry a hash tag, e.g. `{jq}`). */
  clusterNodes?: string[];
  prefix?: string;
  /** The module's `redis.replicaAcks`: replicas that must have a job's events before a write of them counts as done. */
  replicaAcks?: number;
  worker?: boolean;
  concurrency?: number;
  /** On a bullmq worker: also run the BullMQ progress processor on a `JobQueueWorker` of this queue. */
  bridgeQueue?: string;
  /** The module's `queues` option (the queues it bridges and may enqueue into). */
  queues?: string[];
  /** The module's `bridgeForeignWorkers` option (default true). */
  bridgeForeignWorkers?: boolean;
}

const OWNER = 'bench';

/**
 * This library in one process, as a Nest application context: a worker (runs the bench handlers)
 * and/or an api-like consumer (enqueues and follows jobs through `JobQueue`).
 */
export async function libraryRole(config: LibraryConfig): Promise<RoleMethods> {
  const options: JobQueueModuleOptions =
    config.backend === 'memory'
      ? { backend: 'memory', concurrency: config.concurrency }
      : {
          backend: 'bullmq',
          worker: config.worker ?? true,
          concurrency: config.concurrency,
          queues: config.queues,
          bridgeForeignWorkers: config.bridgeForeignWorkers,
          redis: { url: config.redisUrl, clusterNodes: config.clusterNodes, prefix: config.prefix, replicaAcks: config.replicaAcks },
        };
  const app = await NestFactory.createApplicationContext(BenchAppModule.register(options), { logger: ['error', 'warn'] });
  const queue = app.get(JobQueue);
  const bridgeWorker =
    config.bridgeQueue && config.worker !== false && config.backend === 'bullmq'
      ? new JobQueueWorker(config.bridgeQueue, reportProgress, {
          connection: { url: config.redisUrl, maxRetriesPerRequest: null },
          prefix: config.prefix,
          concurrency: config.concurrency ?? 10,
        })
      : undefined;
  await bridgeWorker?.waitUntilReady();

  let follower: { delivered: number; stop: AbortController } | undefined;
  const meter = new DeliveryMeter(() => follower?.delivered ?? 0);
  const starts = new Map<string, AttemptStarts>();
  const records = new Map<string, ReceivedEvents>();
  /** Enqueues `n` jobs of `name`, 50 at a time; their ids in order. */
  const enqueueMany = async (n: number, name: string, data: unknown): Promise<string[]> => {
    const ids: string[] = [];
    for (let i = 0; i < n; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => queue.enqueue(name, data, { owner: OWNER })));
      ids.push(...batch.map((job) => job.id));
    }
    return ids;
  };

  return {
    /** Enqueues one job of `mode` and follows it to the end, timing every event. */
    async run(params: RunParams): Promise<RunSummary> {
      const receipt = new Receipt(params.n);
      const name = params.mode === 'burst' ? BENCH_JOBS.burst : BENCH_JOBS.paced;
      const job = await queue.enqueue(name, { n: params.n, rate: params.rate }, { owner: OWNER });
      const abort = new AbortController();
      const following = (async () => {
        for await (const page of queue.followPages(job.id, { owner: OWNER, signal: abort.signal })) {
          const at = now();
          for (const event of page)
            if (!isTerminalEventType(event.type) && event.type !== 'started') receipt.add(event.data as TokenData, at);
        }
      })();
      await Promise.race([following, receipt.wait(params.timeoutMs)]);
      abort.abort();
      await following;
      return receipt.summary(params.skip, params.keep);
    },

    /**
     * Enqueues one job of `mode` for the bridged BullMQ processor of `queue` and follows it to the
     * end, timing every `progress` event (the processor's `updateProgress` calls).
     */
    async runBridged(params: RunParams & { queue: string }): Promise<RunSummary> {
      const receipt = new Receipt(params.n);
      const job = await queue.enqueue(params.mode, { n: params.n, rate: params.rate }, { queue: params.queue, owner: OWNER });
      const abort = new AbortController();
      const following = (async () => {
        for await (const page of queue.followPages(job.id, { queue: params.queue, owner: OWNER, signal: abort.signal })) {
          const at = now();
          for (const event of page) if (event.type === 'progress') receipt.add((event.data as ProgressValue).data, at);
        }
      })();
      await Promise.race([following, receipt.wait(params.timeoutMs)]);
      abort.abort();
      await following;
      return receipt.summary(params.skip, params.keep);
    },

    /** Worker side of the fan-out scenario: enqueues `k` jobs emitting at `rate`; returns their ids. */
    async fanOutStart(params: { k: number; rate: number }): Promise<string[]> {
      fanOutState.stop = false;
      fanOutState.emitted = 0;
      return enqueueMany(params.k, BENCH_JOBS.fanOut, { rate: params.rate });
    },
    fanOutStatus: () => ({ running: fanOutState.running, emitted: fanOutState.emitted }),
    async fanOutStop(): Promise<void> {
      fanOutState.stop = true;
      await waitFor('fan-out handlers to return', () => fanOutState.running === 0, 30_000);
    },

    /** Follower side: follows one job in the background, counting its events. */
    follow(params: { jobId: string }): void {
      const state = { delivered: 0, stop: new AbortController() };
      follower = state;
      void (async () => {
        for await (const page of queue.followPages(params.jobId, { owner: OWNER, signal: state.stop.signal }))
          state.delivered += page.length;
      })();
    },
    /** Starts a measurement window of CPU time per delivered event (see {@link DeliveryMeter}). */
    mark: () => meter.mark(),
    measure: () => meter.measure(),

    /**
     * Enqueues one job of `mode` without following it; returns its id. `owner` defaults to the
     * bench's own (the demo api in development mode serves jobs of `anonymous`).
     */
    async enqueue(params: { mode: 'burst' | 'paced'; n: number; rate?: number; owner?: string }): Promise<string> {
      const name = params.mode === 'burst' ? BENCH_JOBS.burst : BENCH_JOBS.paced;
      return (await queue.enqueue(name, { n: params.n, rate: params.rate }, { owner: params.owner ?? OWNER })).id;
    },

    /**
     * Enqueues one job of `mode` into `queue`, whose jobs a BullMQ processor runs (a `JobQueueWorker`'s
     * or a plain worker's), without following it; returns its id.
     */
    async enqueueProcessorJob(params: {
      queue: string;
      mode: 'burst' | 'paced';
      n: number;
      rate?: number;
      owner?: string;
      /** The processor holds the job until its process is told to release it (a plain BullMQ worker of this bench). */
      gated?: boolean;
    }): Promise<string> {
      const data = { n: params.n, rate: params.rate, gated: params.gated };
      return (await queue.enqueue(params.mode, data, { queue: params.queue, owner: params.owner ?? OWNER })).id;
    },

    /** Enqueues `n` no-op jobs with at most `inFlight` enqueues outstanding; returns how long that took and their ids. */
    enqueueNoop(params: { n: number; inFlight: number }): Promise<{ ms: number; ids: string[] }> {
      return enqueueConcurrently(params.n, params.inFlight, async () => (await queue.enqueue(BENCH_JOBS.noop, null, { owner: OWNER })).id);
    },

    /** Enqueues `n` held jobs (they run until released or cancelled); returns their ids. */
    enqueueHeld(params: { n: number }): Promise<string[]> {
      return enqueueMany(params.n, BENCH_JOBS.held, null);
    },
    /** Held jobs running in this process. */
    heldRunning: () => heldJobs.running,
    /** Ends the held jobs running in this process and waits until their handlers have returned. */
    releaseHeld: () => heldJobs.release(),

    /**
     * When attempt `attempt` of `jobId` started, as this process saw its `started` event (the
     * shared monotonic clock). The job is followed from the first such call on, until `close`.
     */
    attemptStartedAt(params: { jobId: string; attempt: number; timeoutMs: number }): Promise<number> {
      let watch = starts.get(params.jobId);
      if (!watch) starts.set(params.jobId, (watch = new AttemptStarts(queue, params.jobId, OWNER)));
      return watch.at(params.attempt, params.timeoutMs);
    },

    /** Follows `jobId` from its first event in the background, keeping what it receives (see {@link ReceivedEvents}). */
    recordEvents(params: { jobId: string }): void {
      records.set(params.jobId, new ReceivedEvents(queue, params.jobId, OWNER));
    },
    /** Events {@link recordEvents} has received of `jobId` so far. */
    recordedEvents: (params: { jobId: string }): number => records.get(params.jobId)!.received,
    /** Once the recorded follower of `jobId` ended (at most `timeoutMs`): its events against the job's stream. */
    async compareRecorded(params: { jobId: string; emitted: number; timeoutMs: number }): Promise<StreamComparison> {
      const record = records.get(params.jobId)!;
      records.delete(params.jobId);
      return record.compareWithStream(params.emitted, params.timeoutMs);
    },
    /** The state of `jobId`, as `JobQueue.getJob` reports it. */
    async jobState(params: { jobId: string }): Promise<string> {
      return (await queue.getJob(params.jobId, { owner: OWNER })).state;
    },

    /** Cancels `jobId` (a running handler's signal fires wherever it runs). */
    async cancel(params: { jobId: string }): Promise<void> {
      await queue.cancel(params.jobId, { owner: OWNER });
    },

    /** How many of `ids` the library reports completed (a check that the runs did the work). */
    async countCompleted(params: { ids: string[] }): Promise<number> {
      const infos = await Promise.all(params.ids.map((id) => queue.getJob(id, { owner: OWNER })));
      return infos.filter((info) => info.state === 'completed').length;
    },

    async close(): Promise<void> {
      follower?.stop.abort();
      for (const watch of starts.values()) watch.close();
      for (const record of records.values()) record.close();
      await bridgeWorker?.close();
      await app.close();
    },
  };
}
