import { startDemoApi, type DemoApi } from '../support/demo-api.js';
import type { RunSummary } from '../support/payload.js';
import { freePort } from '../support/redis-server.js';
import { relayPath } from '../roles/raw-ndjson-relay.js';
import { RoleProcess } from '../support/rpc.js';
import { pacedLatency, type PacedLatency } from '../support/single-job-rounds.js';
import { round } from '../support/stats.js';

/** Names of the two contenders in {@link HttpLatencyResult}. */
export const HTTP_LATENCY_CONTENDERS = { library: 'library-ndjson', raw: 'raw-xread-ndjson' } as const;

export interface HttpLatencyContenderResult {
  contender: string;
  label: string;
  latency: PacedLatency;
}

export interface HttpLatencyResult {
  ratePerSec: number;
  rounds: number;
  eventsPerRound: number;
  /** Leading events of each round not counted. */
  warmupEvents: number;
  contenders: HttpLatencyContenderResult[];
  /** Library minus raw, in ms: p50, median of the rounds' p99s, pooled p99, max. */
  aboveRawMs: { p50: number; p99: number; pooledP99: number; max: number };
}

export interface HttpLatencyOptions {
  redisUrl: string;
  ratePerSec: number;
  rounds: number;
  eventsPerRound: number;
  warmupEvents: number;
  log(line: string): void;
}

/** A contender, its processes started (their stops pushed to the caller's list): `run` is one paced job, read by the shared client. */
interface HttpPath {
  name: string;
  label: string;
  run(n: number, rate: number, skip: number): Promise<RunSummary>;
}

/** A round takes under 2 s: a stream that stalls is cut off here and reported short (not every event once). */
const TIMEOUT_MS = 10_000;
/** The demo api in development mode serves the jobs of this owner. */
const DEMO_OWNER = 'anonymous';

/**
 * The library end to end, as a deployment runs it: a `@JobHandler` on a worker process emits at a
 * steady rate, the demo api (`dist/apps/api/main.js`, api only) serves the job's events as NDJSON
 * (`GET /builds/:id/events`), and the client reads them over HTTP.
 */
async function libraryPath(redisUrl: string, client: RoleProcess, started: Array<() => Promise<void>>): Promise<HttpPath> {
  const prefix = 'bench-http';
  const worker = await RoleProcess.start('library', { backend: 'bullmq', redisUrl, prefix, worker: true });
  started.push(() => worker.stop());
  const api: DemoApi = await startDemoApi({ redisUrl, prefix });
  started.push(() => api.stop());
  return {
    name: HTTP_LATENCY_CONTENDERS.library,
    label: 'this library: @JobHandler on a worker, demo api NDJSON, fetch client',
    async run(n, rate, skip) {
      const id = await worker.call<string>('enqueue', { mode: 'paced', n, rate, owner: DEMO_OWNER });
      await client.call('arm', { url: `${api.url}/builds/${encodeURIComponent(id)}/events`, n });
      return client.call('collect', { timeoutMs: TIMEOUT_MS, skip, keep: true });
    },
  };
}

/**
 * Raw Redis plus the same HTTP hop: a producer doing awaited `XADD` at the same rate and payload,
 * a plain `node:http` relay reading the stream with `XREAD BLOCK` and writing NDJSON lines, and
 * the same client.
 */
async function rawPath(redisUrl: string, client: RoleProcess, started: Array<() => Promise<void>>): Promise<HttpPath> {
  const producer = await RoleProcess.start('raw-redis', { redisUrl });
  started.push(() => producer.stop());
  const port = await freePort();
  const relay = await RoleProcess.start('raw-ndjson-relay', { redisUrl, port });
  started.push(() => relay.stop());
  let streams = 0;
  return {
    name: HTTP_LATENCY_CONTENDERS.raw,
    label: 'raw ioredis: awaited XADD, XREAD BLOCK relayed as NDJSON by node:http, fetch client',
    async run(n, rate, skip) {
      const key = `bench-http-raw:{${++streams}}:events`;
      await client.call('arm', { url: `http://127.0.0.1:${port}${relayPath(key, n)}`, n });
      await producer.call('produce', { key, n, rate, pipeline: false });
      return client.call('collect', { timeoutMs: TIMEOUT_MS, skip, keep: true });
    },
  };
}

/**
 * Latency through one HTTP hop, with the heaps the processes build up by themselves: no garbage
 * collection is forced between rounds (unlike the single-job scenario). One job per round at
 * `ratePerSec`, from the handler's ready-to-emit time to the receipt of its NDJSON line by a
 * `fetch` client in its own process, for this library and for raw `XADD`/`XREAD BLOCK` behind a
 * plain HTTP relay. Rounds alternate between the two, so that noise of the machine hits both.
 */
export async function httpLatency(options: HttpLatencyOptions): Promise<HttpLatencyResult> {
  const stops: Array<() => Promise<void>> = [];
  try {
    const client = await RoleProcess.start('event-stream-client', {});
    stops.push(() => client.stop());
    const paths = [await libraryPath(options.redisUrl, client, stops), await rawPath(options.redisUrl, client, stops)];
    const rounds = new Map<HttpPath, RunSummary[]>(paths.map((path) => [path, []]));
    // One unmeasured round each: JIT, connections, scripts loaded.
    for (const path of paths) await path.run(options.warmupEvents * 2, options.ratePerSec, 0);
    for (let index = 0; index < options.rounds; index++) {
      for (const path of paths) {
        const summary = await path.run(options.eventsPerRound, options.ratePerSec, options.warmupEvents);
        rounds.get(path)!.push(summary);
        options.log(
          `  ${path.name} at ${options.ratePerSec}/s, round ${index + 1}: p50 ${summary.latencyMs.p50.toFixed(3)} ms, ` +
            `p99 ${summary.latencyMs.p99.toFixed(3)} ms, max ${summary.latencyMs.max.toFixed(3)} ms (${summary.received}/${summary.sent})`,
        );
      }
    }
    const contenders = paths.map((path) => ({
      contender: path.name,
      label: path.label,
      latency: pacedLatency(rounds.get(path)!, options.ratePerSec),
    }));
    const [library, raw] = contenders.map((entry) => entry.latency);
    return {
      ratePerSec: options.ratePerSec,
      rounds: options.rounds,
      eventsPerRound: options.eventsPerRound,
      warmupEvents: options.warmupEvents,
      contenders,
      aboveRawMs: {
        p50: round(library.p50Ms - raw.p50Ms),
        p99: round(library.p99Ms - raw.p99Ms),
        pooledP99: round(library.pooledP99Ms - raw.pooledP99Ms),
        max: round(library.maxMs - raw.maxMs),
      },
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}
