import { Redis } from 'ioredis';
import { now } from '../support/clock.js';
import { cpuMs } from '../support/proc.js';
import type { ExtraScriptCalls } from '../roles/bullmq.js';
import { RoleProcess } from '../support/rpc.js';
import { median, round } from '../support/stats.js';

export interface JobThroughputResult {
  contender: string;
  label: string;
  jobs: number;
  concurrency: number;
  /** Median of the runs: jobs from the first enqueue to the last completion, per second. */
  jobsPerSec: number;
  runs: number[];
  /** Enqueue rate alone (the producer's side), median. */
  enqueuePerSec: number;
  /** CPU time per job, in microseconds, of each process (median of the runs). */
  cpuUsPerJob: { producer: number; worker: number; redis: number };
}

export interface JobThroughputOptions {
  redisUrl: string;
  jobs: number;
  repetitions: number;
  /** Worker concurrency (the demo's default is 10). */
  concurrency: number;
  /** Enqueues outstanding at once in the producer process. */
  inFlight: number;
  /** Process id of redis-server, to account for its CPU time. */
  redisPid: number;
  log(line: string): void;
}

interface Contender {
  name: string;
  label: string;
  /** The stream where BullMQ records what happens to the queue's jobs (`completed` among them). */
  eventsKey: string;
  start(redisUrl: string, concurrency: number): Promise<{ producer: RoleProcess; worker: RoleProcess }>;
}

const CONTENDERS: Contender[] = [
  {
    name: 'library',
    label: 'this library: JobQueue.enqueue + @JobHandler',
    eventsKey: 'bench-jobs:jobs:events',
    async start(redisUrl, concurrency) {
      const redis = { redisUrl, prefix: 'bench-jobs', backend: 'bullmq' };
      const producer = await RoleProcess.start('library', { ...redis, worker: false });
      const worker = await RoleProcess.start('library', { ...redis, worker: true, concurrency });
      return { producer, worker };
    },
  },
  {
    name: 'bullmq',
    label: 'plain BullMQ: Queue.add + Worker',
    eventsKey: 'bull:bench:events',
    async start(redisUrl, concurrency) {
      const producer = await RoleProcess.start('bullmq', { redisUrl, worker: false, concurrency: 1 });
      const worker = await RoleProcess.start('bullmq', { redisUrl, worker: true, concurrency });
      return { producer, worker };
    },
  },
  {
    name: 'bullmq-job-streams',
    label: 'plain BullMQ on jobStreamsBackend(): JobStreamsQueue.add + Worker',
    eventsKey: 'bull:bench-job-streams:events',
    async start(redisUrl, concurrency) {
      const config = { redisUrl, queue: 'bench-job-streams', jobStreams: true };
      const producer = await RoleProcess.start('bullmq', { ...config, worker: false, concurrency: 1 });
      const worker = await RoleProcess.start('bullmq', { ...config, worker: true, concurrency });
      return { producer, worker };
    },
  },
  withEmptyScriptCalls('bullmq-one-call', 'plain BullMQ + 1 empty script call per job (worker)', { producer: 0, worker: 1 }),
  withEmptyScriptCalls('bullmq-four-calls', "plain BullMQ + 4 empty script calls per job (this library's count)", {
    producer: 2,
    worker: 2,
  }),
];

/**
 * Plain BullMQ with empty script calls of its own per job: what those calls cost, whatever they
 * would write. Both rows are bounds for the library's design, not contenders: it keeps its per-job
 * writes (metadata, `started`, the terminal event) in scripts of its own next to BullMQ's.
 */
function withEmptyScriptCalls(name: string, label: string, calls: ExtraScriptCalls): Contender {
  const queue = `bench-${name}`;
  return {
    name,
    label,
    eventsKey: `bull:${queue}:events`,
    async start(redisUrl, concurrency) {
      const config = { redisUrl, queue, extraScriptCalls: calls };
      const producer = await RoleProcess.start('bullmq', { ...config, worker: false, concurrency: 1 });
      const worker = await RoleProcess.start('bullmq', { ...config, worker: true, concurrency });
      return { producer, worker };
    },
  };
}

/**
 * Waits until BullMQ has recorded `jobs` completions in the queue's events stream after `after`
 * (read as they come, long before BullMQ trims the stream).
 */
async function countCompleted(admin: Redis, key: string, after: string, jobs: number, deadline: number): Promise<void> {
  let seen = 0;
  let last = after;
  while (seen < jobs) {
    if (now() > deadline) throw new Error(`${key}: ${jobs} jobs did not complete within 120 s (${seen} did)`);
    const reply = (await admin.xread('COUNT', 10_000, 'BLOCK', 100, 'STREAMS', key, last)) as Array<
      [string, Array<[string, string[]]>]
    > | null;
    for (const [id, fields] of reply?.[0]?.[1] ?? []) {
      last = id;
      if (fields[0] === 'event' && fields[1] === 'completed') seen++;
    }
  }
}

/**
 * No-op jobs end to end: a producer process enqueues, a worker process runs them; jobs per second
 * from the first enqueue until BullMQ has recorded the last one completed.
 */
export async function jobThroughput(options: JobThroughputOptions): Promise<JobThroughputResult[]> {
  const admin = new Redis(options.redisUrl);
  const started = new Map<Contender, { producer: RoleProcess; worker: RoleProcess }>();
  type Run = { jobsPerSec: number; enqueuePerSec: number; cpu: { producer: number; worker: number; redis: number } };
  const runs = new Map<Contender, Run[]>();
  const runOnce = async (contender: Contender, jobs: number): Promise<Run> => {
    const { producer, worker } = started.get(contender)!;
    const pids = [producer.pid, worker.pid, options.redisPid];
    const after = (await admin.xrevrange(contender.eventsKey, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0';
    const cpuBefore = pids.map(cpuMs);
    const start = now();
    const completed = countCompleted(admin, contender.eventsKey, after, jobs, start + 120_000);
    const { ms: enqueueMs, ids } = await producer.call<{ ms: number; ids: string[] }>('enqueueNoop', {
      n: jobs,
      inFlight: options.inFlight,
    });
    await completed;
    const elapsed = now() - start;
    const [producerMs, workerMs, redisMs] = pids.map((pid, i) => ((cpuMs(pid) - cpuBefore[i]) * 1000) / jobs);
    // Every job ran and finished as its contender sees it, not just as BullMQ's event says.
    const sample = ids.filter((_, index) => index % 50 === 0);
    const done = await producer.call<number>('countCompleted', { ids: sample });
    if (done !== sample.length)
      throw new Error(`${contender.name}: ${sample.length - done} of ${sample.length} sampled jobs are not completed`);
    return {
      jobsPerSec: (jobs * 1000) / elapsed,
      enqueuePerSec: (jobs * 1000) / enqueueMs,
      cpu: { producer: producerMs, worker: workerMs, redis: redisMs },
    };
  };
  try {
    await admin.flushall();
    for (const contender of CONTENDERS) {
      started.set(contender, await contender.start(options.redisUrl, options.concurrency));
      runs.set(contender, []);
      await runOnce(contender, Math.round(options.jobs / 5));
    }
    for (let rep = 0; rep < options.repetitions; rep++) {
      for (const contender of CONTENDERS) {
        const run = await runOnce(contender, options.jobs);
        runs.get(contender)!.push(run);
        options.log(
          `  ${contender.name} run ${rep + 1}: ${Math.round(run.jobsPerSec)} jobs/s (enqueue alone ${Math.round(run.enqueuePerSec)}/s; ` +
            `CPU us/job producer ${Math.round(run.cpu.producer)}, worker ${Math.round(run.cpu.worker)}, redis ${Math.round(run.cpu.redis)})`,
        );
      }
    }
    return CONTENDERS.map((contender) => ({
      contender: contender.name,
      label: contender.label,
      jobs: options.jobs,
      concurrency: options.concurrency,
      jobsPerSec: round(median(runs.get(contender)!.map((run) => run.jobsPerSec))),
      runs: runs.get(contender)!.map((run) => round(run.jobsPerSec)),
      enqueuePerSec: round(median(runs.get(contender)!.map((run) => run.enqueuePerSec))),
      cpuUsPerJob: {
        producer: round(median(runs.get(contender)!.map((run) => run.cpu.producer))),
        worker: round(median(runs.get(contender)!.map((run) => run.cpu.worker))),
        redis: round(median(runs.get(contender)!.map((run) => run.cpu.redis))),
      },
    }));
  } finally {
    for (const { producer, worker } of started.values()) await Promise.all([producer.stop(), worker.stop()]);
    admin.disconnect();
  }
}
