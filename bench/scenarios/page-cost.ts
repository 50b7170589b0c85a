import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { JobQueue, JobQueueModule, JobQueueWorker, JobStreamsQueue, jobStreamsBackend } from 'nestjs-job-streams';
import { readRedisUsage } from '../support/redis-usage.js';
import { median, round } from '../support/stats.js';

/** One job of `pages` pages on one contender, per page. */
export interface PageCostRound {
  contender: string;
  /** Wall time per page, µs. */
  timeUs: number;
  /** CPU time of redis-server per page (`INFO cpu`: user + system), µs. */
  redisCpuUs: number;
  /** Time Redis spent running scripts per page (`INFO commandstats`: execution alone, no I/O), µs. */
  scriptUs: number;
  /** Script calls (EVAL, EVALSHA) per page: round trips the worker makes. */
  scriptCalls: number;
  /** Commands Redis ran per page, those inside scripts included. */
  commands: number;
}

export interface PageCostResult {
  pages: number;
  rounds: PageCostRound[];
  /** Per contender, the medians of its rounds, and their ratios to plain BullMQ's. */
  summary: Array<{ contender: string; timeUs: number; redisCpuUs: number; scriptCalls: number; time: number; redisCpu: number }>;
}

export interface PageCostOptions {
  redisUrl: string;
  /** Pages per job (each one round). */
  pages: number;
  /** Rounds per contender, taken in turns. */
  rounds: number;
  log(line: string): void;
}

/** The report processor of the demo, without its wait: per page one progress call and one log line, each awaited. */
async function pages(job: Job<{ pages: number }>): Promise<null> {
  for (let page = 1; page <= job.data.pages; page++) {
    await job.updateProgress({ page, pages: job.data.pages });
    await job.log(`page ${page} of ${job.data.pages}`);
  }
  return null;
}

interface Contender {
  name: string;
  worker: Worker;
  /** Adds a job of `n` pages; resolves once its worker completed it. */
  run(n: number): Promise<void>;
}

/** Resolves when `worker` completed the job `add` adds (BullMQ's own event: no Redis call of the bench's). */
function completion(worker: Worker, add: () => Promise<string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = new Set<string>();
    let id: string | undefined;
    const onCompleted = (job: Job): void => {
      done.add(job.id!);
      if (id !== undefined && done.has(id)) {
        worker.off('completed', onCompleted);
        resolve();
      }
    };
    worker.on('completed', onCompleted);
    add().then((added) => {
      id = added;
      if (done.has(id)) onCompleted({ id } as Job);
    }, reject);
  });
}

/**
 * What one page (`updateProgress` + `log`) of a processor costs, bridged and not, on one
 * redis-server in one process: a `JobQueueWorker` (its calls composed with BullMQ's scripts), a
 * plain BullMQ `Worker` on `jobStreamsBackend()` alone (`backend-only`: the composed Redis work
 * without the module's worker side), and a plain BullMQ `Worker`. One
 * job of `pages` pages per round, the contenders in turns; `INFO` before and after each round.
 */
export async function pageCost(options: PageCostOptions): Promise<PageCostResult> {
  const prefix = `bench-pages-${randomUUID().slice(0, 8)}`;
  const connection = { url: options.redisUrl };
  const app: INestApplicationContext = await NestFactory.createApplicationContext(
    JobQueueModule.forRoot({
      backend: 'bullmq',
      queues: ['composed'],
      bridgeForeignWorkers: false,
      redis: { url: options.redisUrl, prefix },
    }),
    { logger: false },
  );
  const admin = new Redis(options.redisUrl);
  const jobQueue = app.get(JobQueue);
  const plainQueue = new Queue('plain', { connection, prefix });
  const bridged = (queue: string, worker: Worker): Contender => ({
    name: queue,
    worker,
    run: (n) => completion(worker, async () => (await jobQueue.enqueue('report', { pages: n }, { queue, owner: 'bench' })).id),
  });
  const plainWorker = new Worker('plain', pages, { connection, prefix });
  // A plain Worker on the module's backend alone: the same Redis work per page as `composed`,
  // without the module's worker side (bridge, attempt lifecycle) in the process.
  const backendQueue = new JobStreamsQueue('backend-only', { connection, prefix });
  const backendWorker = new Worker('backend-only', pages, { connection, prefix }, jobStreamsBackend());
  const contenders: Contender[] = [
    bridged('composed', new JobQueueWorker('composed', pages, { connection, prefix })),
    {
      name: 'backend-only',
      worker: backendWorker,
      run: (n) => completion(backendWorker, async () => (await backendQueue.add('report', { pages: n })).id!),
    },
    {
      name: 'plain',
      worker: plainWorker,
      run: (n) => completion(plainWorker, async () => (await plainQueue.add('report', { pages: n })).id!),
    },
  ];
  try {
    await Promise.all(contenders.map((contender) => contender.worker.waitUntilReady()));
    for (const contender of contenders) await contender.run(500); // scripts loaded, connections and code warm
    const rounds: PageCostRound[] = [];
    for (let round = 0; round < options.rounds; round++) {
      for (const contender of contenders) {
        const before = await readRedisUsage(admin);
        await contender.run(options.pages);
        const after = await readRedisUsage(admin);
        const perPage = (value: number): number => value / options.pages;
        rounds.push({
          contender: contender.name,
          timeUs: round3(perPage((after.at - before.at) * 1000)),
          redisCpuUs: round3(perPage((after.cpuMs - before.cpuMs) * 1000)),
          scriptUs: round3(perPage((after.scriptMs - before.scriptMs) * 1000)),
          scriptCalls: round3(perPage(after.scriptCalls - before.scriptCalls)),
          commands: round3(perPage(after.commands - before.commands - 1)),
        });
        options.log(`  ${JSON.stringify(rounds.at(-1))}`);
      }
    }
    const medianOf = (name: string, field: 'timeUs' | 'redisCpuUs' | 'scriptCalls'): number =>
      median(rounds.filter((entry) => entry.contender === name).map((entry) => entry[field]));
    const plainTime = medianOf('plain', 'timeUs');
    const plainCpu = medianOf('plain', 'redisCpuUs');
    const summary = contenders.map(({ name }) => ({
      contender: name,
      timeUs: medianOf(name, 'timeUs'),
      redisCpuUs: medianOf(name, 'redisCpuUs'),
      scriptCalls: medianOf(name, 'scriptCalls'),
      time: round(medianOf(name, 'timeUs') / plainTime),
      redisCpu: round(medianOf(name, 'redisCpuUs') / plainCpu),
    }));
    return { pages: options.pages, rounds, summary };
  } finally {
    await Promise.all([...contenders.map((contender) => contender.worker.close()), plainQueue.close(), backendQueue.close()]);
    await app.close();
    admin.disconnect();
  }
}

function round3(value: number): number {
  return round(value, 3);
}
