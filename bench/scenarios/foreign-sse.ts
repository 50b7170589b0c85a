import { Redis } from 'ioredis';
import { RedisKeys, bridgeLeaseHolder } from 'nestjs-job-streams';
import { waitFor } from '../support/clock.js';
import { startDemoApi, type DemoApi } from '../support/demo-api.js';
import type { RunSummary } from '../support/payload.js';
import { RoleProcess } from '../support/rpc.js';
import { complete, pacedLatency, type PacedLatency } from '../support/single-job-rounds.js';
import { median, round } from '../support/stats.js';

/** Names of the two paths in {@link ForeignSseResult}. */
export const FOREIGN_SSE_PATHS = { sse: 'bridged-sse', queueEvents: 'queue-events' } as const;

export interface ForeignSsePathResult {
  path: string;
  label: string;
  throughput: {
    /** Median of the bursts: updates from the first one sent to the last one received, per second. */
    updatesPerSec: number;
    runs: number[];
    /** Every burst delivered every update exactly once, in order. */
    complete: boolean;
  };
  latency: PacedLatency;
}

/** The sizes of the run (its options but Redis' address and the log). */
type ForeignSseSizes = Omit<ForeignSseOptions, 'redisUrl' | 'log'>;

export interface ForeignSseResult extends ForeignSseSizes {
  paths: ForeignSsePathResult[];
  /** The SSE client's updates/s over `QueueEvents`' in the same burst, median of the bursts. */
  throughputRatio: number;
  /**
   * The SSE client's latency minus `QueueEvents'` over the same updates, in ms: p50 and max over
   * all rounds, `p99` the median of each round's difference of p99s (both paths time the same
   * updates in a round), `pooledP99` the difference of the pooled p99s.
   */
  aboveQueueEventsMs: { p50: number; p99: number; pooledP99: number; max: number };
  /** Entries of BullMQ's events stream per read of api A's bridge during the bursts (its `/metrics`). */
  bridgeEntriesPerRead: number;
}

export interface ForeignSseOptions {
  redisUrl: string;
  bursts: number;
  burstUpdates: number;
  ratePerSec: number;
  rounds: number;
  roundUpdates: number;
  /** Leading updates of each paced round not counted. */
  warmupUpdates: number;
  log(line: string): void;
}

const PREFIX = 'bench-foreign-sse';
const QUEUE = 'reports';
/** The demo api in development mode serves the jobs of this owner. */
const DEMO_OWNER = 'anonymous';
const TIMEOUT_MS = 60_000;

/**
 * Progress of a plain BullMQ worker (no code of this library) to an SSE client of another api, as
 * the foreign-workers issue words it, against the same updates read with `QueueEvents`. Two demo
 * apis (`dist/apps/api/main.js`, api only) run on the bench's Redis: api A holds the bridge lease
 * of `reports` and bridges the worker's updates into the job's stream, api B serves that stream
 * as SSE (`GET /reports/:id/events`) to a `fetch` client in its own process. A `QueueEvents` in a
 * process of its own reads the same queue's events stream, so both paths time the very same
 * updates, sent by the worker with awaited `job.updateProgress` calls: as fast as it goes (bursts,
 * throughput) and at `ratePerSec` (latency). The worker holds each job until both readers are in
 * place. No garbage collection is forced.
 */
export async function foreignSse(options: ForeignSseOptions): Promise<ForeignSseResult> {
  const stops: Array<() => Promise<void>> = [];
  const admin = new Redis(options.redisUrl);
  try {
    const started = async <T extends { stop(): Promise<void> }>(starting: Promise<T>): Promise<T> => {
      const running = await starting;
      stops.push(() => running.stop());
      return running;
    };
    const enqueuer = await started(
      RoleProcess.start('library', {
        backend: 'bullmq',
        redisUrl: options.redisUrl,
        prefix: PREFIX,
        worker: false,
        queues: [QUEUE],
        bridgeForeignWorkers: false,
      }),
    );
    const bridging: DemoApi = await started(startDemoApi({ redisUrl: options.redisUrl, prefix: PREFIX }));
    await leaseHeldBy(admin, bridging.child.pid!);
    const serving: DemoApi = await started(startDemoApi({ redisUrl: options.redisUrl, prefix: PREFIX }));
    const worker = await started(
      RoleProcess.start('bullmq', { redisUrl: options.redisUrl, worker: true, concurrency: 1, prefix: PREFIX, queue: QUEUE }),
    );
    const queueEvents = await started(
      RoleProcess.start('bullmq', { redisUrl: options.redisUrl, worker: false, concurrency: 1, prefix: PREFIX, queue: QUEUE }),
    );
    const client = await started(RoleProcess.start('event-stream-client', {}));

    /** One job of `n` updates, read by both paths: [SSE client, QueueEvents]. */
    const run = async (n: number, rate: number | undefined, skip: number): Promise<[RunSummary, RunSummary]> => {
      await queueEvents.call('startRecording');
      const mode = rate ? 'paced' : 'burst';
      const id = await enqueuer.call<string>('enqueueProcessorJob', { queue: QUEUE, mode, n, rate, owner: DEMO_OWNER, gated: true });
      await client.call('arm', { url: `${serving.url}/reports/${encodeURIComponent(id)}/events`, n, format: 'sse' });
      // Both readers are in place: the worker may begin.
      await waitFor('the worker to hold the job', async () => (await worker.call<number>('heldRunning')) > 0, 10_000);
      await worker.call('releaseHeld');
      const keep = !!rate;
      return Promise.all([
        client.call<RunSummary>('collect', { timeoutMs: TIMEOUT_MS, skip, keep }),
        queueEvents.call<RunSummary>('collectJob', { jobId: id, n, timeoutMs: TIMEOUT_MS, skip, keep }),
      ]);
    };

    // Warm-up: JIT, connections, scripts loaded.
    await run(Math.min(2000, options.burstUpdates), undefined, 0);
    await run(options.warmupUpdates * 2, options.ratePerSec, 0);
    const readsBefore = await bridgeReads(bridging);
    const bursts: Array<[RunSummary, RunSummary]> = [];
    for (let index = 0; index < options.bursts; index++) {
      const pair = await run(options.burstUpdates, undefined, 0);
      bursts.push(pair);
      options.log(
        `  burst ${index + 1}: SSE ${Math.round(pair[0].eventsPerSec)} updates/s (${pair[0].received}/${pair[0].sent}), ` +
          `QueueEvents ${Math.round(pair[1].eventsPerSec)} updates/s (${pair[1].received}/${pair[1].sent})`,
      );
    }
    const readsAfter = await bridgeReads(bridging);
    const paced: Array<[RunSummary, RunSummary]> = [];
    for (let index = 0; index < options.rounds; index++) {
      const pair = await run(options.roundUpdates, options.ratePerSec, options.warmupUpdates);
      paced.push(pair);
      options.log(
        `  at ${options.ratePerSec}/s, round ${index + 1}: SSE p50 ${pair[0].latencyMs.p50.toFixed(3)} p99 ${pair[0].latencyMs.p99.toFixed(3)} ms, ` +
          `QueueEvents p50 ${pair[1].latencyMs.p50.toFixed(3)} p99 ${pair[1].latencyMs.p99.toFixed(3)} ms`,
      );
    }

    const labels = [
      'plain BullMQ worker, bridged by api A, SSE from api B to a fetch client',
      'the same updates read by QueueEvents in its own process',
    ];
    const paths = [FOREIGN_SSE_PATHS.sse, FOREIGN_SSE_PATHS.queueEvents].map((path, side): ForeignSsePathResult => {
      const runs = bursts.map((pair) => pair[side]);
      return {
        path,
        label: labels[side],
        throughput: {
          updatesPerSec: round(median(runs.map((summary) => summary.eventsPerSec))),
          runs: runs.map((summary) => round(summary.eventsPerSec)),
          complete: runs.every(complete),
        },
        latency: pacedLatency(
          paced.map((pair) => pair[side]),
          options.ratePerSec,
        ),
      };
    });
    const [sse, queueEventsLatency] = paths.map((path) => path.latency);
    const { redisUrl: _redisUrl, log: _log, ...sizes } = options;
    return {
      ...sizes,
      paths,
      throughputRatio: round(median(bursts.map(([bySse, byQueueEvents]) => bySse.eventsPerSec / byQueueEvents.eventsPerSec))),
      aboveQueueEventsMs: {
        p50: round(sse.p50Ms - queueEventsLatency.p50Ms),
        p99: round(median(paced.map(([bySse, byQueueEvents]) => bySse.latencyMs.p99 - byQueueEvents.latencyMs.p99))),
        pooledP99: round(sse.pooledP99Ms - queueEventsLatency.pooledP99Ms),
        max: round(sse.maxMs - queueEventsLatency.maxMs),
      },
      bridgeEntriesPerRead: round((readsAfter.entries - readsBefore.entries) / Math.max(1, readsAfter.reads - readsBefore.reads)),
    };
  } finally {
    admin.disconnect();
    for (const stop of stops.reverse()) await stop();
  }
}

/** The bridge's read counters of {@link QUEUE} on `api`'s `/metrics`. */
async function bridgeReads(api: DemoApi): Promise<{ reads: number; entries: number }> {
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const sample = (name: string): number => Number(new RegExp(`^job_queue_${name}\\{queue="${QUEUE}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { reads: sample('bridge_reads'), entries: sample('bridge_entries_read') };
}

/** Waits until the process `pid` holds the bridge lease of {@link QUEUE} and has recorded where it reads from. */
async function leaseHeldBy(admin: Redis, pid: number): Promise<void> {
  const keys = new RedisKeys(PREFIX);
  await waitFor(
    `the bridge lease of "${QUEUE}" held by the first api (pid ${pid})`,
    async () => {
      const [lease, position] = await admin.mget(keys.bridgeLease(QUEUE), keys.bridgePosition(QUEUE));
      return lease !== null && bridgeLeaseHolder(lease)?.pid === pid && position !== null;
    },
    30_000,
  );
}
