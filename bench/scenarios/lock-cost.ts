import { Redis } from 'ioredis';
import { validateJobQueueOptions } from 'nestjs-job-streams';
import { sleep, waitFor } from '../support/clock.js';
import { readRedisUsage, redisUsageRate, type RedisUsageRate } from '../support/redis-usage.js';
import { RoleProcess } from '../support/rpc.js';
import { round } from '../support/stats.js';

/** Redis's work in one window, per second. */
export interface LockCostWindow {
  windowMs: number;
  /** Every command Redis ran (the commands inside scripts included). */
  commandsPerSec: number;
  /** Of which script calls (`EVALSHA`): round trips of the workers. */
  scriptCallsPerSec: number;
  /** Time Redis spent running scripts, ms per second (execution alone, no I/O). */
  scriptMsPerSec: number;
  /** CPU time of redis-server, ms per second. */
  cpuMsPerSec: number;
}

export interface LockCostPoint {
  contender: string;
  label: string;
  lockDurationMs: number;
  /** The same workers before any job. */
  idle: LockCostWindow;
  /** With every job running. */
  running: LockCostWindow;
  /** Running above idle, divided by the running jobs. */
  perJob: { commandsPerSec: number; scriptUsPerSec: number; cpuUsPerSec: number };
}

export interface LockCostResult {
  workers: number;
  /** Jobs running during each window, spread evenly over the workers. */
  runningJobs: number;
  points: LockCostPoint[];
}

export interface LockCostOptions {
  redisUrl: string;
  workers: number;
  jobs: number;
  /** The shortest window with jobs running; each is a whole number of its lock's renewal periods. */
  minWindowMs: number;
  idleWindowMs: number;
  log(line: string): void;
}

interface Contender {
  name: string;
  label: string;
  lockDurationMs: number;
  /** One worker process running up to `concurrency` held jobs. */
  start(redisUrl: string, concurrency: number): Promise<RoleProcess>;
}

/** BullMQ's default `lockDuration` (and `stalledInterval`), which this library used before. */
const BULLMQ_DEFAULT_LOCK_MS = 30_000;

const DEFAULT_LOCK_MS = validateJobQueueOptions({ backend: 'bullmq' }).lockDurationMs;

const CONTENDERS: Contender[] = [
  {
    name: 'library-default',
    label: `now: this library's default (lock ${DEFAULT_LOCK_MS / 1000} s, stalled check every min(lock, 4 s))`,
    lockDurationMs: DEFAULT_LOCK_MS,
    start: (redisUrl, concurrency) =>
      RoleProcess.start('library', { backend: 'bullmq', redisUrl, prefix: 'bench-lock', worker: true, concurrency }),
  },
  {
    name: 'bullmq-default',
    label: `before: BullMQ's defaults (lock ${BULLMQ_DEFAULT_LOCK_MS / 1000} s, stalled check every ${BULLMQ_DEFAULT_LOCK_MS / 1000} s)`,
    lockDurationMs: BULLMQ_DEFAULT_LOCK_MS,
    start: (redisUrl, concurrency) => RoleProcess.start('bullmq', { redisUrl, worker: true, concurrency }),
  },
];

/**
 * The period of BullMQ's lock renewal timer: a quarter of the lock (`lockRenewTime` is half the
 * lock, and its timer fires every half of that). Each firing renews, in one script call per worker,
 * every lock not renewed for more than a period: a job that has run for a period is renewed at every
 * firing, and a window of whole periods sees each worker renew as often whatever its phase.
 */
function renewalPeriodMs(lockDurationMs: number): number {
  return lockDurationMs / 4;
}

function describeWindow(rate: RedisUsageRate): LockCostWindow {
  return {
    windowMs: Math.round(rate.windowMs),
    commandsPerSec: round(rate.commandsPerSec),
    scriptCallsPerSec: round(rate.scriptCallsPerSec),
    scriptMsPerSec: round(rate.scriptMsPerSec),
    cpuMsPerSec: round(rate.cpuMsPerSec),
  };
}

/**
 * What running jobs cost Redis through their locks alone (renewals and stalled checks): `jobs`
 * held jobs (no events, no progress) on `workers` worker processes, with this library's default
 * lock and with BullMQ's defaults it used before, each against the same workers with no job.
 * Redis's commands per second and CPU, read from its `INFO` at both ends of each window.
 */
export async function lockCost(options: LockCostOptions): Promise<LockCostResult> {
  const admin = new Redis(options.redisUrl);
  const concurrency = Math.ceil(options.jobs / options.workers);
  let workers: RoleProcess[] = [];
  const measure = async (windowMs: number): Promise<LockCostWindow> => {
    const before = await readRedisUsage(admin);
    await sleep(windowMs);
    return describeWindow(redisUsageRate(before, await readRedisUsage(admin)));
  };
  const running = async (): Promise<number> =>
    (await Promise.all(workers.map((worker) => worker.call<number>('heldRunning')))).reduce((a, b) => a + b);
  try {
    const points: LockCostPoint[] = [];
    for (const contender of CONTENDERS) {
      await admin.flushall();
      workers = await Promise.all(Array.from({ length: options.workers }, () => contender.start(options.redisUrl, concurrency)));
      const idle = await measure(options.idleWindowMs);
      await workers[0].call('enqueueHeld', { n: options.jobs });
      await waitFor(`${options.jobs} held jobs running`, async () => (await running()) === options.jobs, 30_000, 50);
      // A job that started less than a period before a firing is renewed only at the next one.
      const period = renewalPeriodMs(contender.lockDurationMs);
      await sleep(period);
      const busy = await measure(Math.ceil(options.minWindowMs / period) * period);
      if ((await running()) !== options.jobs) throw new Error(`${contender.name}: held jobs ended during the window`);
      const perJob = (value: (window: LockCostWindow) => number, scale = 1): number =>
        round(((value(busy) - value(idle)) * scale) / options.jobs);
      const point: LockCostPoint = {
        contender: contender.name,
        label: contender.label,
        lockDurationMs: contender.lockDurationMs,
        idle,
        running: busy,
        perJob: {
          commandsPerSec: perJob((window) => window.commandsPerSec),
          scriptUsPerSec: perJob((window) => window.scriptMsPerSec, 1000),
          cpuUsPerSec: perJob((window) => window.cpuMsPerSec, 1000),
        },
      };
      points.push(point);
      options.log(
        `  ${contender.name}, ${options.jobs} jobs running: ${busy.commandsPerSec} commands/s (idle ${idle.commandsPerSec}), ` +
          `${busy.scriptCallsPerSec} script calls/s, ${busy.scriptMsPerSec} ms/s in scripts (idle ${idle.scriptMsPerSec}), ` +
          `CPU ${busy.cpuMsPerSec} ms/s (idle ${idle.cpuMsPerSec}); per running job ${point.perJob.commandsPerSec} commands/s, ` +
          `${point.perJob.scriptUsPerSec} us/s in scripts, ${point.perJob.cpuUsPerSec} us/s CPU`,
      );
      await Promise.all(workers.map((worker) => worker.call('releaseHeld')));
      await Promise.all(workers.map((worker) => worker.stop()));
      workers = [];
    }
    return { workers: options.workers, runningJobs: options.jobs, points };
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    admin.disconnect();
  }
}
