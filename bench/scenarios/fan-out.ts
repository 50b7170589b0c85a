import { Redis } from 'ioredis';
import { sleep, waitFor } from '../support/clock.js';
import { RoleProcess } from '../support/rpc.js';
import { round } from '../support/stats.js';

export interface FanOutPoint {
  k: number;
  /** CPU time of the follower process in the window, per event it delivered, in microseconds. */
  cpuUsPerEvent: number;
  cpuMs: number;
  delivered: number;
  /** Events all K jobs emitted per second during the window. */
  totalEventsPerSec: number;
  windowMs: number;
}

export interface FanOutResult {
  contender: string;
  label: string;
  ratePerJob: number;
  points: FanOutPoint[];
}

export interface FanOutOptions {
  redisUrl: string;
  ks: number[];
  /** Events per second of every job. */
  ratePerJob: number;
  windowMs: number;
  log(line: string): void;
}

interface Contender {
  name: string;
  label: string;
  start(redisUrl: string, k: number): Promise<{ worker: RoleProcess; follower: RoleProcess }>;
}

const CONTENDERS: Contender[] = [
  {
    name: 'library',
    label: 'this library: JobQueue.followPages (shared XREAD over followed jobs only)',
    async start(redisUrl, k) {
      const redis = { redisUrl, prefix: 'bench-fan', backend: 'bullmq' };
      const follower = await RoleProcess.start('library', { ...redis, worker: false });
      const worker = await RoleProcess.start('library', { ...redis, worker: true, concurrency: k });
      return { worker, follower };
    },
  },
  {
    name: 'bullmq-queue-events',
    label: 'BullMQ QueueEvents listener dispatching progress by job id',
    async start(redisUrl, k) {
      const follower = await RoleProcess.start('bullmq', { redisUrl, worker: false, concurrency: 1 });
      const worker = await RoleProcess.start('bullmq', { redisUrl, worker: true, concurrency: k });
      return { worker, follower };
    },
  },
];

/**
 * K jobs emit at the same rate; one api-like process follows one of them. What does each event
 * it delivers cost that process in CPU, as K grows?
 */
export async function fanOut(options: FanOutOptions): Promise<FanOutResult[]> {
  const admin = new Redis(options.redisUrl);
  const results: FanOutResult[] = [];
  try {
    for (const contender of CONTENDERS) {
      const result: FanOutResult = { contender: contender.name, label: contender.label, ratePerJob: options.ratePerJob, points: [] };
      results.push(result);
      for (const k of options.ks) {
        await admin.flushall();
        const { worker, follower } = await contender.start(options.redisUrl, k);
        try {
          const ids = await worker.call<string[]>('fanOutStart', { k, rate: options.ratePerJob });
          await follower.call('follow', { jobId: ids[0] });
          await waitFor(
            `${k} jobs running`,
            async () => (await worker.call<{ running: number }>('fanOutStatus')).running === k,
            60_000,
            100,
          );
          await sleep(1000);
          const before = await worker.call<{ emitted: number }>('fanOutStatus');
          await follower.call('mark');
          await sleep(options.windowMs);
          const window = await follower.call<{ cpuMs: number; delivered: number; wallMs: number }>('measure');
          const after = await worker.call<{ emitted: number }>('fanOutStatus');
          const point: FanOutPoint = {
            k,
            cpuUsPerEvent: round((window.cpuMs * 1000) / window.delivered),
            cpuMs: round(window.cpuMs),
            delivered: window.delivered,
            totalEventsPerSec: round(((after.emitted - before.emitted) * 1000) / window.wallMs),
            windowMs: Math.round(window.wallMs),
          };
          result.points.push(point);
          options.log(
            `  ${contender.name} K=${k}: ${point.cpuUsPerEvent} us CPU per delivered event (${point.delivered} delivered, ${point.totalEventsPerSec} events/s in all)`,
          );
          await worker.call('fanOutStop');
        } finally {
          await Promise.all([follower.stop(), worker.stop()]);
        }
      }
    }
    return results;
  } finally {
    admin.disconnect();
  }
}
