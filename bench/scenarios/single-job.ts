import { RedisKeys } from 'nestjs-job-streams';
import type { LibraryConfig } from '../roles/library.js';
import { RoleProcess } from '../support/rpc.js';
import {
  runSingleJobRounds,
  type Contender,
  type Pair,
  type SingleJobResult,
  type SingleJobRoundsOptions,
} from '../support/single-job-rounds.js';

/** A contender of this scenario: all of them run against the one redis-server given to {@link singleJob}. */
interface OneNodeContender extends Omit<Contender, 'start'> {
  start(redisUrl: string): Promise<Pair>;
}

const TIMEOUT_MS = 60_000;
let streams = 0;

/** Events per burst of {@link libraryPair}'s contenders: about half a second of work. */
export const LIBRARY_BURST_EVENTS = 60_000;

/**
 * This library's contender: a `@JobHandler` emitting on a worker process, followed through
 * `JobQueue.follow` by an api-only process, both connected as `redis` says (one server or a
 * Redis Cluster).
 */
export async function libraryPair(redis: Pick<LibraryConfig, 'redisUrl' | 'clusterNodes' | 'prefix' | 'replicaAcks'>): Promise<Pair> {
  const config: LibraryConfig = { ...redis, backend: 'bullmq' };
  const consumer = await RoleProcess.start('library', { ...config, worker: false });
  const producer = await RoleProcess.start('library', { ...config, worker: true });
  return {
    producer,
    consumer,
    run: (n, rate, skip) => consumer.call('run', { mode: rate ? 'paced' : 'burst', n, rate, skip, keep: !!rate, timeoutMs: TIMEOUT_MS }),
  };
}

const library: OneNodeContender = {
  name: 'library',
  label: 'this library (BullMQ backend)',
  n: LIBRARY_BURST_EVENTS,
  start: (redisUrl) => libraryPair({ redisUrl, prefix: 'bench-lib' }),
};

function raw(pipeline: boolean): OneNodeContender {
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

const bullmq: OneNodeContender = {
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
const bridge: OneNodeContender = {
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
const foreign: OneNodeContender = {
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

const resumable: OneNodeContender = {
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
const libraryProducerRawConsumer: OneNodeContender = {
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

const CONTENDERS = [library, raw(false), raw(true), bullmq, bridge, foreign, resumable, libraryProducerRawConsumer];

export interface SingleJobOptions extends SingleJobRoundsOptions {
  redisUrl: string;
  /** The server's process: its CPU time counts in each burst's (see {@link SingleJobResult}). */
  redisPid: number;
}

/**
 * One job's events from the handler to a consumer in another process, for this library and its
 * peers on one redis-server: throughput of a burst and latency at a steady rate.
 */
export function singleJob(options: SingleJobOptions): Promise<SingleJobResult[]> {
  return runSingleJobRounds(
    CONTENDERS.map((contender) => ({ ...contender, start: () => contender.start(options.redisUrl) })),
    options,
  );
}
