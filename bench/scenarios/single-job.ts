import type { RunSummary } from '../support/payload.js';
import { RoleProcess } from '../support/rpc.js';
import { median, quantile, round } from '../support/stats.js';
import { RedisKeys } from 'nestjs-job-streams';

/** One way of getting a job's events from the producer process to a consumer process. */
interface Contender {
  name: string;
  label: string;
  /** A diagnostic that only takes part in the latency rounds. */
  latencyOnly?: boolean;
  /** Events per throughput run: about a second or two of work at the contender's rate. */
  n: number;
  start(redisUrl: string): Promise<Pair>;
}

interface Pair {
  producer: RoleProcess;
  consumer: RoleProcess;
  /** Processes on the path between them, if any. */
  between?: RoleProcess[];
  /** One run: a burst of `n` events, or `n` events at `rate` per second (the first `skip` not timed). */
  run(n: number, rate: number | undefined, skip: number): Promise<RunSummary>;
}

const TIMEOUT_MS = 60_000;
let streams = 0;

const library: Contender = {
  name: 'library',
  label: 'this library (BullMQ backend)',
  n: 60_000,
  async start(redisUrl) {
    const redis = { redisUrl, prefix: 'bench-lib', backend: 'bullmq' };
    const consumer = await RoleProcess.start('library', { ...redis, worker: false });
    const producer = await RoleProcess.start('library', { ...redis, worker: true });
    return {
      producer,
      consumer,
      run: (n, rate, skip) => consumer.call('run', { mode: rate ? 'paced' : 'burst', n, rate, skip, keep: !!rate, timeoutMs: TIMEOUT_MS }),
    };
  },
};

function raw(pipeline: boolean): Contender {
  return {
    name: pipeline ? 'raw-xadd-pipelined' : 'raw-xadd-awaited',
    label: pipeline ? 'raw ioredis, pipelined XADD' : 'raw ioredis, XADD awaited per event',
    n: pipeline ? 150_000 : 25_000,
    async start(redisUrl) {
      const consumer = await RoleProcess.start('raw-redis', { redisUrl });
      const producer = await RoleProcess.start('raw-redis', { redisUrl });
      return {
        producer,
        consumer,
        async run(n, rate, skip) {
          const key = `bench-raw:{${++streams}}:events`;
          await consumer.call('arm', { key, n });
          await producer.call('produce', { key, n, rate, pipeline });
          return consumer.call('collect', { timeoutMs: TIMEOUT_MS, skip, keep: !!rate });
        },
      };
    },
  };
}

const bullmq: Contender = {
  name: 'bullmq-queue-events',
  label: 'BullMQ job.updateProgress + QueueEvents',
  n: 15_000,
  async start(redisUrl) {
    const consumer = await RoleProcess.start('bullmq', { redisUrl, worker: false, concurrency: 10 });
    const producer = await RoleProcess.start('bullmq', { redisUrl, worker: true, concurrency: 10 });
    return {
      producer,
      consumer,
      run: (n, rate, skip) => consumer.call('run', { mode: rate ? 'paced' : 'burst', n, rate, skip, keep: !!rate, timeoutMs: TIMEOUT_MS }),
    };
  },
};

/** The same BullMQ processor as {@link bullmq}, on a `JobQueueWorker`: its calls bridged into the job's stream. */
const bridge: Contender = {
  name: 'processor-bridge',
  label: 'BullMQ job.updateProgress bridged by this library, read by JobQueue.follow',
  n: 15_000,
  async start(redisUrl) {
    const redis = { redisUrl, prefix: 'bench-bridge', backend: 'bullmq', bridgeQueue: 'bench-reports', concurrency: 10 };
    const consumer = await RoleProcess.start('library', { ...redis, worker: false });
    const producer = await RoleProcess.start('library', { ...redis, worker: true });
    return {
      producer,
      consumer,
      run: (n, rate, skip) =>
        consumer.call('runBridged', {
          queue: 'bench-reports',
          mode: rate ? 'paced' : 'burst',
          n,
          rate,
          skip,
          keep: !!rate,
          timeoutMs: TIMEOUT_MS,
        }),
    };
  },
};

/**
 * A plain BullMQ worker (no code of this library, as a service in another language would be) whose
 * `updateProgress` calls reach BullMQ's queue events stream; a process of this library bridges
 * them into the job's stream (it holds the queue's bridge lease), and a third process follows the
 * job through `JobQueue`. Against {@link bullmq}: the same worker read through `QueueEvents`.
 */
const foreign: Contender = {
  name: 'foreign-bridge',
  label: 'plain BullMQ worker, bridged from its queue events by another process, read by JobQueue.follow',
  n: 15_000,
  async start(redisUrl) {
    const options = { redisUrl, prefix: 'bench-foreign', backend: 'bullmq', queues: ['bench'], worker: false };
    const bridge = await RoleProcess.start('library', options);
    const consumer = await RoleProcess.start('library', { ...options, bridgeForeignWorkers: false });
    const producer = await RoleProcess.start('bullmq', { redisUrl, worker: true, concurrency: 10, prefix: 'bench-foreign' });
    return {
      producer,
      consumer,
      between: [bridge],
      run: (n, rate, skip) =>
        consumer.call('runBridged', { queue: 'bench', mode: rate ? 'paced' : 'burst', n, rate, skip, keep: !!rate, timeoutMs: TIMEOUT_MS }),
    };
  },
};

const resumable: Contender = {
  name: 'resumable-stream',
  label: 'resumable-stream (Redis pub/sub)',
  n: 25_000,
  async start(redisUrl) {
    const consumer = await RoleProcess.start('resumable-stream', { redisUrl });
    const producer = await RoleProcess.start('resumable-stream', { redisUrl });
    return {
      producer,
      consumer,
      async run(n, rate, skip) {
        // resumable-stream gives up when the producer does not answer a resume within 1 s (it can
        // miss that on a loaded machine): try a new stream then.
        for (let tries = 1; ; tries++) {
          const streamId = `s${++streams}`;
          await producer.call('create', { streamId });
          try {
            await consumer.call('arm', { streamId, n });
            break;
          } catch (error) {
            if (tries >= 3 || !/Timeout waiting for ack/.test((error as Error).message)) throw error;
            await producer.call('produce', { n: 0 });
          }
        }
        await producer.call('produce', { n, rate });
        return consumer.call('collect', { timeoutMs: TIMEOUT_MS, skip, keep: !!rate });
      },
    };
  },
};

/**
 * Diagnostic: this library's producer (a worker appending through its Lua script), read with a raw
 * `XREAD BLOCK` loop instead of the library's follower. Against the two full paths it shows on
 * which side of Redis the library's latency comes from.
 */
const libraryProducerRawConsumer: Contender = {
  name: 'library-producer-raw-xread',
  label: "this library's producer, read by raw XREAD (diagnostic)",
  latencyOnly: true,
  n: 0,
  async start(redisUrl) {
    const prefix = 'bench-lib-split';
    const producer = await RoleProcess.start('library', { redisUrl, prefix, backend: 'bullmq', worker: true });
    const consumer = await RoleProcess.start('raw-redis', { redisUrl });
    return {
      producer,
      consumer,
      async run(n, rate, skip) {
        const id = await producer.call<string>('enqueue', { mode: rate ? 'paced' : 'burst', n, rate });
        // The job may have started already: the consumer reads its stream from the beginning.
        await consumer.call('arm', { key: new RedisKeys(prefix).events('jobs', id), n });
        return consumer.call('collect', { timeoutMs: TIMEOUT_MS, skip, keep: !!rate });
      },
    };
  },
};

export const CONTENDERS = [library, raw(false), raw(true), bullmq, bridge, foreign, resumable, libraryProducerRawConsumer];

export interface SingleJobResult {
  contender: string;
  label: string;
  /** None for the latency-only diagnostic. */
  throughput: {
    events: number;
    /** Median of the runs. */
    eventsPerSec: number;
    runs: number[];
    /** Every run delivered every event exactly once, in order. */
    complete: boolean;
  } | null;
  latency: {
    ratePerSec: number;
    events: number;
    /** Over all rounds' events. */
    p50Ms: number;
    /**
     * The median of the rounds' p99s: a round hit by load from outside the benchmark (other
     * processes on a shared machine) does not decide it alone.
     */
    p99Ms: number;
    /** p99 over all rounds' events together. */
    pooledP99Ms: number;
    maxMs: number;
    /** p99 of each round on its own, to show the spread. */
    roundP99Ms: number[];
    complete: boolean;
  };
}

export interface SingleJobOptions {
  redisUrl: string;
  repetitions: number;
  /** Paced runs: `latencyRounds` rounds of `latencyEvents` at `ratePerSec`, the first `warmupEvents` of each not counted. */
  ratePerSec: number;
  latencyRounds: number;
  latencyEvents: number;
  warmupEvents: number;
  /** Scales every contender's throughput run size (a quick run uses less). */
  scale: number;
  log(line: string): void;
}

function complete(summary: RunSummary): boolean {
  return summary.received === summary.sent && summary.misordered === 0;
}

/**
 * One job's events from the handler to a consumer in another process: throughput of a burst and
 * latency at a steady rate. Repetitions and latency rounds go round the contenders, so that a
 * noisy moment of the machine hits all of them alike; latencies of all rounds are pooled.
 */
export async function singleJob(options: SingleJobOptions): Promise<SingleJobResult[]> {
  const pairs = new Map<Contender, Pair>();
  const bursts = new Map<Contender, RunSummary[]>();
  const paced = new Map<Contender, RunSummary[]>();
  try {
    for (const contender of CONTENDERS) {
      const pair = await contender.start(options.redisUrl);
      pairs.set(contender, pair);
      bursts.set(contender, []);
      paced.set(contender, []);
      // Warm-up: JIT, connections, scripts loaded.
      if (contender.latencyOnly) await pair.run(500, 1000, 0);
      else await pair.run(Math.round(Math.min(5000, contender.n / 5)), undefined, 0);
    }
    for (let rep = 0; rep < options.repetitions; rep++) {
      for (const contender of CONTENDERS) {
        if (contender.latencyOnly) continue;
        const summary = await pairs.get(contender)!.run(Math.round(contender.n * options.scale), undefined, 0);
        bursts.get(contender)!.push(summary);
        options.log(
          `  ${contender.name} burst ${rep + 1}: ${Math.round(summary.eventsPerSec)} events/s (${summary.received}/${summary.sent})`,
        );
      }
    }
    // Each paced round starts from collected heaps in both processes: the bursts before it, or
    // another contender's round, leave garbage whose collection would otherwise land in it.
    const settled = async (pair: Pair): Promise<void> => {
      await Promise.all([pair.producer, pair.consumer, ...(pair.between ?? [])].map((role) => role.call('collectGarbage')));
    };
    // One unmeasured paced round each after the bursts, to reach a steady state.
    for (const contender of CONTENDERS) {
      await settled(pairs.get(contender)!);
      await pairs.get(contender)!.run(options.warmupEvents * 2, options.ratePerSec, 0);
    }
    for (let round = 0; round < options.latencyRounds; round++) {
      for (const contender of CONTENDERS) {
        await settled(pairs.get(contender)!);
        const summary = await pairs.get(contender)!.run(options.latencyEvents, options.ratePerSec, options.warmupEvents);
        paced.get(contender)!.push(summary);
        options.log(
          `  ${contender.name} at ${options.ratePerSec}/s, round ${round + 1}: p50 ${summary.latencyMs.p50.toFixed(3)} ms, p99 ${summary.latencyMs.p99.toFixed(3)} ms (${summary.received}/${summary.sent})`,
        );
      }
    }
    return CONTENDERS.map((contender) => {
      const runs = bursts.get(contender)!;
      const rounds = paced.get(contender)!;
      const samples = rounds.flatMap((summary) => summary.latencySamples ?? []);
      return {
        contender: contender.name,
        label: contender.label,
        throughput: runs.length
          ? {
              events: runs[0].sent,
              eventsPerSec: round(median(runs.map((run) => run.eventsPerSec))),
              runs: runs.map((run) => round(run.eventsPerSec)),
              complete: runs.every(complete),
            }
          : null,
        latency: {
          ratePerSec: options.ratePerSec,
          events: samples.length,
          p50Ms: round(quantile(samples, 0.5)),
          p99Ms: round(median(rounds.map((summary) => summary.latencyMs.p99))),
          pooledP99Ms: round(quantile(samples, 0.99)),
          maxMs: round(quantile(samples, 1)),
          roundP99Ms: rounds.map((summary) => round(summary.latencyMs.p99)),
          complete: rounds.every(complete),
        },
      };
    });
  } finally {
    for (const pair of pairs.values())
      await Promise.all([pair.producer, pair.consumer, ...(pair.between ?? [])].map((role) => role.stop()));
  }
}
