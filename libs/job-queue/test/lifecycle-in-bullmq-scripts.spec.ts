import 'reflect-metadata';
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { JobQueueWorker, type JobEvent, type JobQueue } from 'nestjs-job-streams';
import { scriptSource } from '../src/backends/bullmq/job-scripts.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import { createContractApp, type ContractApp } from './contract/job-queue.contract.js';
import { JOBS } from './contract/test-handlers.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisMonitor, type MonitoredCommand } from '../../../test/support/redis-monitor.js';
import { RedisServer } from '../../../test/support/redis-server.js';

/**
 * On the `bullmq` backend a job's stream starts and ends inside BullMQ's own scripts: `started`
 * (the attempt, the cancel check) with BullMQ's move of the job to active, the terminal event with
 * its move to completed or failed, each as one script run through the worker's
 * `jobStreamsBackend()`. Real Redis and BullMQ; what runs where is read from Redis' `MONITOR`.
 */
describe('bullmq backend: a job starts and ends inside BullMQ’s moves', () => {
  let server: RedisServer;
  let admin: Redis;
  const apps: ContractApp[] = [];
  const workers: JobQueueWorker[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
  });

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.close()));
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  afterAll(async () => {
    admin?.disconnect();
    await server?.destroy();
  });

  async function app(prefix: string, queues?: string[]): Promise<JobQueue> {
    const started = await createContractApp({ backend: 'bullmq', redis: { url: server.url, prefix }, queues, shutdownGraceMs: 200 });
    apps.push(started);
    return started.queue;
  }

  async function eventsOf(queue: JobQueue, id: string, queueName?: string): Promise<JobEvent[]> {
    const events: JobEvent[] = [];
    for await (const event of queue.follow(id, { owner: 'alice', queue: queueName })) events.push(event);
    return events;
  }

  /** An `XADD` to `key` whose fields hold `values`. */
  const xadd =
    (key: string, ...values: string[]) =>
    (command: MonitoredCommand): boolean =>
      command.name === 'XADD' && command.args[0] === key && values.every((value) => command.args.includes(value));

  /**
   * The commands MONITOR showed from the first that matches `a` to the first that matches `b`
   * (either order), that no script ran (a client sent them): none when one script wrote both.
   */
  function sentBetween(monitor: RedisMonitor, a: (command: MonitoredCommand) => boolean, b: (command: MonitoredCommand) => boolean) {
    const [i, j] = [monitor.commands.findIndex(a), monitor.commands.findIndex(b)];
    expect({ a: i >= 0, b: j >= 0 }).toEqual({ a: true, b: true });
    return monitor.commands.slice(Math.min(i, j), Math.max(i, j) + 1).filter((command) => command.source !== 'lua');
  }

  /** True when Redis has ever loaded the module's script `name` (run alone, not inside BullMQ's). */
  async function ranAlone(name: string): Promise<boolean> {
    const sha = createHash('sha1').update(scriptSource(name)).digest('hex');
    const [exists] = (await admin.script('EXISTS', sha)) as number[];
    return exists === 1;
  }

  it('@JobHandler and processor jobs: `started` is written by BullMQ’s move to active, the terminal event by its move to finished; no call of their own', async () => {
    await admin.script('FLUSH');
    const prefix = `l${randomUUID().slice(0, 8)}`;
    const keys = new RedisKeys(prefix);
    const queue = await app(prefix);
    workers.push(
      new JobQueueWorker(
        'reports',
        async (job: Job<{ pages: number }>) => {
          for (let page = 1; page <= job.data.pages; page++) await job.updateProgress({ page });
          return { pages: job.data.pages };
        },
        { connection: { url: server.url }, prefix },
      ),
    );
    const monitor = await RedisMonitor.start(server.url);
    try {
      const jobs = [
        ...(await Promise.all([1, 2, 3].map((i) => queue.enqueue(JOBS.echo, { i }, { owner: 'alice' })))).map((job) => ({
          queue: 'jobs',
          id: job.id,
        })),
        ...(await Promise.all([1, 2, 3].map((pages) => queue.enqueue('report', { pages }, { owner: 'alice', queue: 'reports' })))).map(
          (job) => ({ queue: 'reports', id: job.id }),
        ),
      ];
      for (const job of jobs) {
        const types = (await eventsOf(queue, job.id, job.queue)).map((event) => event.type);
        expect({ job, first: types[0], last: types.at(-1), started: types.filter((type) => type === 'started').length }).toEqual({
          job,
          first: 'started',
          last: 'completed',
          started: 1,
        });
      }
      await monitor.caughtUp(admin);

      for (const job of jobs) {
        const bullEvents = `${prefix}:${job.queue}:events`;
        const ours = keys.events(job.queue, job.id);
        const start = sentBetween(monitor, xadd(bullEvents, 'active', job.id), xadd(ours, 'started'));
        const end = sentBetween(monitor, xadd(bullEvents, 'completed', job.id), xadd(ours, 'completed'));
        expect({ job, start: start.map((command) => command.name), end: end.map((command) => command.name) }).toEqual({
          job,
          start: [],
          end: [],
        });
      }
      expect({ startAttempt: await ranAlone('start-attempt'), finishJob: await ranAlone('finish-job') }).toEqual({
        startAttempt: false,
        finishJob: false,
      });
    } finally {
      monitor.stop();
    }
  });

  it('a completion BullMQ refuses (the job still has a child) ends the stream with the failure BullMQ records instead', async () => {
    const prefix = `r${randomUUID().slice(0, 8)}`;
    const queue = await app(prefix);
    const children = new Queue('children', { connection: { url: server.url }, prefix });
    try {
      workers.push(
        new JobQueueWorker(
          'parents',
          async (job: Job) => {
            // A child no worker runs: BullMQ refuses to complete its parent, and fails it.
            await children.add('child', {}, { parent: { id: job.id!, queue: job.queueQualifiedName } });
            return 'done';
          },
          { connection: { url: server.url }, prefix },
        ),
      );
      const job = await queue.enqueue('parent', {}, { owner: 'alice', queue: 'parents', attempts: 1 });
      const events = await eventsOf(queue, job.id, 'parents');
      expect(events.map((event) => event.type)).toEqual(['started', 'failed']);
      const parents = new Queue('parents', { connection: { url: server.url }, prefix });
      try {
        expect(await parents.getJobState(job.id)).toBe('failed');
      } finally {
        await parents.close();
      }
    } finally {
      await children.close();
    }
  });

  it('a worker slow to start an attempt gets one `started` per attempt, also beside the foreign-worker bridge', async () => {
    const prefix = `s${randomUUID().slice(0, 8)}`;
    // The bridge leads the queue in this process: it writes a `started` for a job BullMQ has active
    // whose stream shows none a second later (a worker without the module).
    const queue = await app(prefix, ['slow']);
    await pollUntil(
      async () => queue.bridgeStatus().some((status) => status.queue === 'slow' && status.leading),
      (leading) => leading,
    );

    /** Takes 1.5 s from BullMQ's handing it a job to running its processor. */
    class SlowToStartWorker extends JobQueueWorker {
      protected override async callProcessJob(job: Job, token: string, signal?: AbortSignal): Promise<unknown> {
        await delay(1500);
        return super.callProcessJob(job, token, signal);
      }
    }
    workers.push(new SlowToStartWorker('slow', async () => 'done', { connection: { url: server.url }, prefix }));

    const job = await queue.enqueue('slow-job', {}, { owner: 'alice', queue: 'slow' });
    const events = await eventsOf(queue, job.id, 'slow');
    expect(events.map((event) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ['completed', { result: 'done' }],
    ]);
  });
});
