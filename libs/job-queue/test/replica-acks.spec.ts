import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { NestFactory } from '@nestjs/core';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { JobQueue, JobQueueModule, JobQueueWorker, RedisKeys, type JobEvent } from 'nestjs-job-streams';
import { createContractApp, type ContractApp } from './contract/job-queue.contract.js';
import { JOBS, createGate } from './contract/test-handlers.js';
import { RedisMonitor } from '../../../test/support/redis-monitor.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { signal } from './support/signal.js';

/** Resolves once `replica` reports its link to the master up (the initial sync is done). */
async function linked(replica: Redis): Promise<void> {
  for (;;) {
    const info = await replica.info('replication');
    if (/master_link_status:up/.test(info)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function eventsOf(app: ContractApp, id: string): Promise<JobEvent[]> {
  const events: JobEvent[] = [];
  for await (const event of app.queue.follow(id, { owner: 'alice' })) events.push(event);
  return events;
}

/**
 * `redis.replicaAcks`: a job's events count as written only once a replica has them (`WAIT`), on
 * a real master with a real replica.
 */
describe('replica acks (bullmq backend, a master and its replica)', () => {
  let master: RedisServer;
  let replica: RedisServer;
  let replicaClient: Redis;

  beforeAll(async () => {
    master = await RedisServer.start();
    replica = await RedisServer.start({ replicaOf: master.port });
    replicaClient = new Redis(replica.url);
    await linked(replicaClient);
  });

  afterAll(async () => {
    replicaClient?.disconnect();
    await replica?.destroy();
    await master?.destroy();
  });

  it('a job runs end to end with every write acknowledged by the replica, which holds the whole stream', async () => {
    const prefix = `ra${randomUUID().slice(0, 8)}`;
    const app = await createContractApp({ backend: 'bullmq', redis: { url: master.url, prefix, replicaAcks: 1 }, shutdownGraceMs: 200 });
    try {
      const info = await app.queue.enqueue(JOBS.steps, { steps: 20, tokensPerStep: 3 }, { owner: 'alice' });
      const events = await eventsOf(app, info.id);
      expect(events).toHaveLength(1 + 20 * 4 + 1);
      expect(events.at(-1)?.type).toBe('completed');
      // Acknowledged means replicated: the replica already has every event the follower got.
      const stored = (await replicaClient.xrange(new RedisKeys(prefix).events('jobs', info.id), '-', '+')) as Array<[string, string[]]>;
      expect(stored.map(([id]) => id)).toEqual(events.map((event) => event.id));
    } finally {
      await app.close();
    }
  });

  it('while the replica is away writes are not acknowledged (the job is not reported done); once it is back each event is in the stream exactly once', async () => {
    const prefix = `rb${randomUUID().slice(0, 8)}`;
    const app = await createContractApp({
      backend: 'bullmq',
      redis: { url: master.url, prefix, replicaAcks: 1, replicaAckTimeoutMs: 100 },
      shutdownGraceMs: 200,
    });
    try {
      const gate = createGate();
      const info = await app.queue.enqueue(JOBS.gated, { gate: gate.key }, { owner: 'alice' });
      await gate.entered;
      await replica.stop();
      // The handler's next events are written to the master but not confirmed: they are retried.
      gate.open();
      const finished = eventsOf(app, info.id);
      const keys = new RedisKeys(prefix);
      const admin = new Redis(master.url);
      try {
        // The handler's `opened` reaches the master (its write is retried until a replica confirms it) ...
        const opened = async (): Promise<boolean> =>
          ((await admin.xrange(keys.events('jobs', info.id), '-', '+')) as Array<[string, string[]]>).some(([, fields]) =>
            fields.includes('opened'),
          );
        while (!(await opened())) await new Promise((resolve) => setTimeout(resolve, 20));
        // ... but nothing after it is written, and the job is not reported done, while no replica has it.
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(await admin.hget(keys.meta('jobs', info.id), 'terminal')).toBeNull();
        expect(await admin.hget(keys.bullJob('jobs', info.id), 'finishedOn')).toBeNull();
        await replica.restart();
        await linked(replicaClient);
        const events = await finished;
        expect(events.map((event) => event.type)).toEqual(['started', 'waiting', 'opened', 'completed']);
        expect(new Set(events.map((event) => event.id)).size).toBe(events.length);
        while (!(await admin.hget(keys.bullJob('jobs', info.id), 'finishedOn'))) await new Promise((resolve) => setTimeout(resolve, 20));
        expect(await replicaClient.xlen(keys.events('jobs', info.id))).toBe(events.length);
      } finally {
        admin.disconnect();
      }
    } finally {
      await app.close();
    }
  });

  it("a processor's calls are each one script with BullMQ's, confirmed by the replica; while it is away the job does not end, and each event is written once", async () => {
    const prefix = `rc${randomUUID().slice(0, 8)}`;
    const app = await NestFactory.createApplicationContext(
      JobQueueModule.forRoot({
        backend: 'bullmq',
        queues: ['pages'],
        bridgeForeignWorkers: false,
        redis: { url: master.url, prefix, replicaAcks: 1, replicaAckTimeoutMs: 100 },
      }),
      { logger: false, abortOnError: false },
    );
    const firstPage = signal();
    const mayGoOn = signal();
    const worker = new JobQueueWorker(
      'pages',
      async (job: Job) => {
        await job.updateProgress({ page: 1 });
        firstPage.fire();
        await mayGoOn.fired;
        await job.updateProgress({ page: 2 });
        await job.log('page 2 done');
        return { pages: 2 };
      },
      { connection: { url: master.url }, prefix },
    );
    const admin = new Redis(master.url);
    const monitor = await RedisMonitor.start(master.url);
    try {
      const jobQueue = app.get(JobQueue);
      const info = await jobQueue.enqueue('report', {}, { queue: 'pages', owner: 'alice' });
      const keys = new RedisKeys(prefix);
      await firstPage.fired;
      await replica.stop();
      mayGoOn.fire();
      // Both calls reach the master, each inside BullMQ's script of the call; unconfirmed, they
      // are written again by calls of their own, which the stream takes once.
      const inStream = async (): Promise<number> => (await admin.xlen(keys.events('pages', info.id))) as number;
      while ((await inStream()) < 4) await new Promise((resolve) => setTimeout(resolve, 20));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await admin.hget(keys.meta('pages', info.id), 'terminal')).toBeNull();
      expect(await admin.hget(keys.bullJob('pages', info.id), 'finishedOn')).toBeNull();
      await replica.restart();
      await linked(replicaClient);
      const events: JobEvent[] = [];
      for await (const event of jobQueue.follow(info.id, { queue: 'pages', owner: 'alice' })) events.push(event);
      expect(events.map((event) => [event.type, event.data])).toEqual([
        ['started', { attempt: 1 }],
        ['progress', { page: 1 }],
        ['progress', { page: 2 }],
        ['log', { message: 'page 2 done' }],
        ['completed', { result: { pages: 2 } }],
      ]);
      const onReplica = (await replicaClient.xrange(keys.events('pages', info.id), '-', '+')) as Array<[string, string[]]>;
      expect(onReplica.map(([id]) => id)).toEqual(events.map((event) => event.id));
      // Sent by the worker: each call one script that writes BullMQ's progress (or log) and the event.
      await monitor.caughtUp(admin);
      const writesOfEvents = monitor.commands.filter(
        (command) => command.name === 'XADD' && command.args[0] === keys.events('pages', info.id) && command.args.includes('progress'),
      );
      expect(writesOfEvents.length).toBeGreaterThanOrEqual(2);
      for (const write of writesOfEvents) {
        const at = monitor.commands.indexOf(write);
        let sent = at;
        while (sent > 0 && monitor.commands[sent].source === 'lua') sent--;
        const script = monitor.commands.slice(sent, at + 1);
        expect(
          script.some(
            (command) => command.name === 'HSET' && command.args[0] === keys.bullJob('pages', info.id) && command.args[1] === 'progress',
          ),
        ).toBe(true);
      }
    } finally {
      mayGoOn.fire();
      monitor.stop();
      admin.disconnect();
      await worker.close();
      await app.close();
    }
  });
});
