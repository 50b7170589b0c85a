import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule, Processor, WorkerHost, getQueueToken } from '@nestjs/bullmq';
import { DelayedError, Queue, QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { JobNotFoundError, JobQueue, JobQueueModule, JobQueueWorker, UnknownQueueError, type JobEvent } from 'nestjs-job-streams';
import { RedisServer } from '../../../test/support/redis-server.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';

// What a team with an @nestjs/bullmq stack adds: workers are made from the bridging subclass.
BullModule.workerClass = JobQueueWorker;

interface ReportData {
  pages: number;
  pageMs?: number;
  failAtPage?: number;
}

/** A plain @nestjs/bullmq processor: it knows nothing of the job queue module. */
@Processor('reports')
class ReportProcessor extends WorkerHost {
  async process(job: Job<ReportData>, _token?: string, signal?: AbortSignal): Promise<{ pages: number }> {
    const { pages, pageMs = 0, failAtPage } = job.data;
    for (let page = 1; page <= pages; page++) {
      if (pageMs) await delay(pageMs, undefined, { signal });
      await job.updateProgress({ page, pages });
      await job.log(`page ${page} of ${pages}`);
      if (page === failAtPage) throw new Error(`Report failed at page ${page}`);
    }
    return { pages };
  }
}

const SANDBOXED = fileURLToPath(new URL('./fixtures/sandboxed-report.cjs', import.meta.url));

function reportEvents(pages: number): Array<[string, unknown]> {
  const events: Array<[string, unknown]> = [];
  for (let page = 1; page <= pages; page++) events.push(['progress', { page, pages }], ['log', { message: `page ${page} of ${pages}` }]);
  return events;
}

function simplify(events: JobEvent[]): Array<[string, unknown]> {
  return events.map((event) => [event.type, event.data]);
}

describe.each(['memory', 'bullmq'] as const)('processor jobs keep the contract (%s backend)', (backend) => {
  let redis: RedisServer | undefined;
  let app: INestApplicationContext;
  let queue: JobQueue;

  beforeAll(async () => {
    const imports = [];
    if (backend === 'bullmq') {
      redis = await RedisServer.start();
      const prefix = `p${randomUUID().slice(0, 8)}`;
      imports.push(
        BullModule.forRoot({ connection: { url: redis.url }, prefix }),
        BullModule.registerQueue({ name: 'reports' }),
        JobQueueModule.forRoot({ backend: 'bullmq', redis: { url: redis.url, prefix } }),
      );
    } else {
      // No Redis and no BullModule: the memory backend runs the same @Processor class itself.
      imports.push(JobQueueModule.forRoot({ backend: 'memory' }));
    }
    @Module({ imports, providers: [ReportProcessor] })
    class ProcessorAppModule {}
    app = await NestFactory.createApplicationContext(ProcessorAppModule, { logger: false, abortOnError: false });
    await app.init();
    queue = app.get(JobQueue);
  });

  afterAll(async () => {
    await app?.close();
    await redis?.destroy();
  });

  async function follow(id: string, owner = 'alice'): Promise<JobEvent[]> {
    const events: JobEvent[] = [];
    for await (const event of queue.follow(id, { queue: 'reports', owner })) events.push(event);
    return events;
  }

  it('started, one progress and one log event per call in call order, one completed; resumable after any event', async () => {
    const job = await queue.enqueue('report', { pages: 4 }, { queue: 'reports', owner: 'alice' });
    const events = await follow(job.id);
    expect(simplify(events)).toEqual([['started', { attempt: 1 }], ...reportEvents(4), ['completed', { result: { pages: 4 } }]]);
    for (let index = 0; index < events.length; index++) {
      const rest = await queue.readEvents(job.id, { queue: 'reports', owner: 'alice', after: events[index].id });
      expect(rest.events).toEqual(events.slice(index + 1));
    }
    expect(await queue.getJob(job.id, { queue: 'reports', owner: 'alice' })).toMatchObject({ state: 'completed', result: { pages: 4 } });
    await expect(queue.getJob(job.id, { queue: 'reports', owner: 'mallory' })).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(queue.getJob(job.id, { owner: 'alice' })).rejects.toBeInstanceOf(JobNotFoundError); // another queue
  });

  it('retries: each attempt starts with started; only the last failure ends the stream', async () => {
    const job = await queue.enqueue('report', { pages: 2, failAtPage: 2 }, { queue: 'reports', owner: 'alice', attempts: 2 });
    expect(simplify(await follow(job.id))).toEqual([
      ['started', { attempt: 1 }],
      ...reportEvents(2),
      ['started', { attempt: 2 }],
      ...reportEvents(2),
      ['failed', { error: { message: 'Report failed at page 2' } }],
    ]);
  });

  it('cancel: a running processor is stopped through its signal, a waiting job never runs', async () => {
    const running = await queue.enqueue('report', { pages: 2, pageMs: 60_000 }, { queue: 'reports', owner: 'alice' });
    const page = await queue.readEvents(running.id, { queue: 'reports', owner: 'alice', waitMs: 10_000 });
    expect(simplify(page.events)).toEqual([['started', { attempt: 1 }]]);
    const waiting = await queue.enqueue('report', { pages: 1 }, { queue: 'reports', owner: 'alice' });
    await queue.cancel(waiting.id, { queue: 'reports', owner: 'alice', reason: 'not needed' });
    await queue.cancel(running.id, { queue: 'reports', owner: 'alice', reason: 'stop' });
    expect(simplify(await follow(waiting.id))).toEqual([['cancelled', { reason: 'not needed' }]]);
    expect(simplify(await follow(running.id))).toEqual([
      ['started', { attempt: 1 }],
      ['cancelled', { reason: 'stop' }],
    ]);
    // The processor is free again at once (its minute-long page was aborted): the next job runs.
    const next = await queue.enqueue('report', { pages: 1 }, { queue: 'reports', owner: 'alice' });
    expect(simplify(await follow(next.id)).at(-1)).toEqual(['completed', { result: { pages: 1 } }]);
  });

  it('a queue it does not serve is refused at enqueue (memory: no processor; bullmq: not in `queues` when that is set)', async () => {
    if (backend === 'memory') {
      await expect(queue.enqueue('report', {}, { queue: 'no-such-queue', owner: 'alice' })).rejects.toBeInstanceOf(UnknownQueueError);
      return;
    }
    const limited = await NestFactory.createApplicationContext(
      JobQueueModule.forRoot({ backend: 'bullmq', worker: false, queues: ['reports'], redis: { url: redis!.url, prefix: 'limited' } }),
      { logger: false, abortOnError: false },
    );
    try {
      const other = limited.get(JobQueue);
      await expect(other.enqueue('report', {}, { queue: 'no-such-queue', owner: 'alice' })).rejects.toBeInstanceOf(UnknownQueueError);
      expect((await other.enqueue('report', { pages: 1 }, { queue: 'reports', owner: 'alice' })).state).toBe('queued');
    } finally {
      await limited.close();
    }
  });
});

describe('the bridge: @nestjs/bullmq processors get per-job event streams (bullmq backend)', () => {
  let redis: RedisServer;
  let app: INestApplicationContext;
  let queue: JobQueue;
  let reports: Queue;
  let prefix: string;

  beforeAll(async () => {
    redis = await RedisServer.start();
    prefix = `b${randomUUID().slice(0, 8)}`;
    @Module({
      imports: [
        BullModule.forRoot({ connection: { url: redis.url }, prefix }),
        BullModule.registerQueue({ name: 'reports' }, { name: 'sandboxed', processors: [SANDBOXED] }),
        JobQueueModule.forRoot({ backend: 'bullmq', redis: { url: redis.url, prefix } }),
      ],
      providers: [ReportProcessor],
    })
    class BridgedAppModule {}
    app = await NestFactory.createApplicationContext(BridgedAppModule, { logger: false, abortOnError: false });
    await app.init();
    queue = app.get(JobQueue);
    reports = app.get<Queue>(getQueueToken('reports'));
  });

  afterAll(async () => {
    await app?.close();
    await redis?.destroy();
  });

  async function follow(id: string, options: { queue: string; owner?: string }): Promise<JobEvent[]> {
    const events: JobEvent[] = [];
    for await (const event of queue.follow(id, options)) events.push(event);
    return events;
  }

  it("a processor's updateProgress and log calls become its job's stream, in call order, once; BullMQ sees exactly the same", async () => {
    const queueEvents = new QueueEvents('reports', { connection: { url: redis.url }, prefix });
    await queueEvents.waitUntilReady();
    try {
      const job = await queue.enqueue('report', { pages: 5 }, { queue: 'reports', owner: 'alice' });
      const seenByQueueEvents: unknown[] = [];
      queueEvents.on('progress', ({ jobId, data }) => {
        if (jobId === job.id) seenByQueueEvents.push(data);
      });
      const completed = new Promise((resolve) => queueEvents.on('completed', ({ jobId }) => jobId === job.id && resolve(jobId)));

      const events = await follow(job.id, { queue: 'reports', owner: 'alice' });
      expect(simplify(events)).toEqual([['started', { attempt: 1 }], ...reportEvents(5), ['completed', { result: { pages: 5 } }]]);
      expect(await follow(job.id, { queue: 'reports', owner: 'alice' })).toEqual(events);
      expect(await queue.getJob(job.id, { queue: 'reports', owner: 'alice' })).toMatchObject({ state: 'completed', result: { pages: 5 } });

      await completed;
      const bullJob = (await reports.getJob(job.id))!;
      expect(bullJob.progress).toEqual({ page: 5, pages: 5 });
      expect(bullJob.returnvalue).toEqual({ pages: 5 });
      expect((await reports.getJobLogs(job.id)).logs).toEqual(
        reportEvents(5)
          .filter(([type]) => type === 'log')
          .map(([, data]) => (data as { message: string }).message),
      );
      expect(seenByQueueEvents).toEqual(
        reportEvents(5)
          .filter(([type]) => type === 'progress')
          .map(([, data]) => data),
      );
    } finally {
      await queueEvents.close();
    }
  });

  it('a job added with plain BullMQ is followed by system calls (no owner) and is unknown to owners; an id never added is unknown', async () => {
    const added = await reports.add('report', { pages: 2 });
    const events = await follow(added.id!, { queue: 'reports' });
    expect(simplify(events)).toEqual([['started', { attempt: 1 }], ...reportEvents(2), ['completed', { result: { pages: 2 } }]]);
    await expect(queue.getJob(added.id!, { queue: 'reports', owner: 'alice' })).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(queue.readEvents(added.id!, { queue: 'reports', owner: 'alice' })).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(queue.getJob(added.id!, { queue: 'reports', owner: '' })).rejects.toBeInstanceOf(JobNotFoundError);
    // Ids that name BullMQ's own keys of the queue (lists, streams) are no jobs either.
    for (const id of ['999999', 'never-added', '{x}:meta', '', 'wait', 'events', 'meta', 'id', 'completed']) {
      await expect(queue.getJob(id, { queue: 'reports' })).rejects.toBeInstanceOf(JobNotFoundError);
      await expect(queue.follow(id, { queue: 'reports' }).next()).rejects.toBeInstanceOf(JobNotFoundError);
    }
  });

  it('a failed attempt is followed by the next started; only the last one ends the stream, with failed', async () => {
    const job = await queue.enqueue('report', { pages: 2, failAtPage: 1 }, { queue: 'reports', owner: 'alice', attempts: 2 });
    const events = await follow(job.id, { queue: 'reports', owner: 'alice' });
    expect(simplify(events)).toEqual([
      ['started', { attempt: 1 }],
      ...reportEvents(2).slice(0, 2),
      ['started', { attempt: 2 }],
      ...reportEvents(2).slice(0, 2),
      ['failed', { error: { message: 'Report failed at page 1' } }],
    ]);
  });

  it('cancel reaches a running processor through its AbortSignal; a waiting job is removed and never runs', async () => {
    const queueEvents = new QueueEvents('reports', { connection: { url: redis.url }, prefix });
    await queueEvents.waitUntilReady();
    try {
      const running = await queue.enqueue('report', { pages: 3, pageMs: 60_000 }, { queue: 'reports', owner: 'alice' });
      const started: JobEvent[] = [];
      for await (const event of queue.follow(running.id, { queue: 'reports', owner: 'alice' })) {
        started.push(event);
        break;
      }
      expect(simplify(started)).toEqual([['started', { attempt: 1 }]]);
      // The processor runs one job at a time (BullMQ's default concurrency): this one waits.
      const waiting = await queue.enqueue('report', { pages: 1 }, { queue: 'reports', owner: 'alice' });
      await queue.cancel(waiting.id, { queue: 'reports', owner: 'alice', reason: 'not needed' });
      expect(simplify(await follow(waiting.id, { queue: 'reports', owner: 'alice' }))).toEqual([['cancelled', { reason: 'not needed' }]]);
      expect(await reports.getJob(waiting.id)).toBeUndefined();

      const left = new Promise((resolve) => {
        const done = ({ jobId }: { jobId: string }) => jobId === running.id && resolve(jobId);
        queueEvents.on('failed', done);
        queueEvents.on('completed', done);
      });
      await queue.cancel(running.id, { queue: 'reports', owner: 'alice', reason: 'stop' });
      expect(simplify(await follow(running.id, { queue: 'reports', owner: 'alice' }))).toEqual([
        ['started', { attempt: 1 }],
        ['cancelled', { reason: 'stop' }],
      ]);
      // Its page would have taken a minute: the signal stopped it. BullMQ records what the
      // processor did (it threw on the abort) and does not retry a cancelled job.
      await left;
      expect(await reports.getJobState(running.id)).toBe('failed');
      expect(await queue.getJob(running.id, { queue: 'reports', owner: 'alice' })).toMatchObject({ state: 'cancelled' });
    } finally {
      await queueEvents.close();
    }
  });

  it('a sandboxed processor (registerQueue processors: [file]) is bridged the same way', async () => {
    const job = await queue.enqueue('report', { pages: 3 }, { queue: 'sandboxed', owner: 'alice' });
    const events = await follow(job.id, { queue: 'sandboxed', owner: 'alice' });
    expect(simplify(events)).toEqual([
      ['started', { attempt: 1 }],
      ...reportEvents(3),
      ['completed', { result: { pages: 3, sandboxed: true } }],
    ]);
  });

  it('a Worker made from the exported JobQueueWorker is bridged the same way', async () => {
    const worker = new JobQueueWorker(
      'exports',
      async (job: Job<{ rows: number }>) => {
        for (let row = 1; row <= job.data.rows; row++) void job.updateProgress(row); // not awaited: order still holds
        await job.log('exported');
        return { rows: job.data.rows };
      },
      { connection: { url: redis.url }, prefix },
    );
    try {
      const job = await queue.enqueue('export', { rows: 20 }, { queue: 'exports', owner: 'alice' });
      const events = await follow(job.id, { queue: 'exports', owner: 'alice' });
      expect(simplify(events)).toEqual([
        ['started', { attempt: 1 }],
        ...Array.from({ length: 20 }, (_, index): [string, unknown] => ['progress', index + 1]),
        ['log', { message: 'exported' }],
        ['completed', { result: { rows: 20 } }],
      ]);
    } finally {
      await worker.close();
    }
  });
});

/** A processor that uses a part of BullMQ's Job the memory backend does not offer. */
@Processor('changes')
class DataChangingProcessor extends WorkerHost {
  async process(job: Job<{ step: number }>): Promise<string> {
    await job.updateProgress(job.data.step);
    await job.updateData({ step: job.data.step + 1 });
    return 'changed';
  }
}

describe('prefixes that differ only by their braces (bullmq backend)', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterAll(async () => {
    await redis.destroy();
  });

  it('`p` and `{p}` on one server (a move to a hash-tag prefix) keep processor jobs with the same BullMQ id apart', async () => {
    const plain = `p${randomUUID().slice(0, 8)}`;
    const apps = await Promise.all(
      [plain, `{${plain}}`].map(async (prefix) => {
        @Module({
          imports: [
            BullModule.forRoot({ connection: { url: redis.url }, prefix }),
            BullModule.registerQueue({ name: 'reports' }),
            JobQueueModule.forRoot({ backend: 'bullmq', redis: { url: redis.url, prefix } }),
          ],
          providers: [ReportProcessor],
        })
        class PrefixAppModule {}
        const app = await NestFactory.createApplicationContext(PrefixAppModule, { logger: false, abortOnError: false });
        await app.init();
        return app;
      }),
    );
    try {
      // Added with plain BullMQ, as an existing stack does: BullMQ numbers each prefix's jobs from 1.
      const first = await apps[0].get<Queue>(getQueueToken('reports')).add('report', { pages: 2 });
      const second = await apps[1].get<Queue>(getQueueToken('reports')).add('report', { pages: 3 });
      expect(second.id).toBe(first.id);
      const [a, b] = apps.map((app) => app.get(JobQueue));
      const eventsOf = async (queue: JobQueue, id: string): Promise<JobEvent[]> => {
        const events: JobEvent[] = [];
        for await (const event of queue.follow(id, { queue: 'reports' })) events.push(event);
        return events;
      };
      const [ofA, ofB] = await Promise.all([eventsOf(a, first.id!), eventsOf(b, second.id!)]);
      expect(simplify(ofA)).toEqual([['started', { attempt: 1 }], ...reportEvents(2), ['completed', { result: { pages: 2 } }]]);
      expect(simplify(ofB)).toEqual([['started', { attempt: 1 }], ...reportEvents(3), ['completed', { result: { pages: 3 } }]]);
    } finally {
      await Promise.all(apps.map((app) => app.close()));
    }
  });
});

describe('the memory backend runs processors with an in-memory Job', () => {
  it('offers the commonly used members and refuses the rest with an error naming the member and the backend', async () => {
    @Module({ imports: [JobQueueModule.forRoot({ backend: 'memory' })], providers: [DataChangingProcessor] })
    class MemoryProcessorModule {}
    const app = await NestFactory.createApplicationContext(MemoryProcessorModule, { logger: false, abortOnError: false });
    try {
      await app.init();
      const queue = app.get(JobQueue);
      const job = await queue.enqueue('change', { step: 1 }, { queue: 'changes', owner: 'alice' });
      const events: JobEvent[] = [];
      for await (const event of queue.follow(job.id, { queue: 'changes', owner: 'alice' })) events.push(event);
      expect(simplify(events)).toEqual([
        ['started', { attempt: 1 }],
        ['progress', 1],
        ['failed', { error: { message: expect.stringMatching(/^Job#updateData is not supported by the memory backend/) } }],
      ]);
    } finally {
      await app.close();
    }
  });
});

describe('the memory backend honours `queues`', () => {
  it('refuses to enqueue into a queue outside `queues`, even when a processor for it exists', async () => {
    @Module({
      imports: [JobQueueModule.forRoot({ backend: 'memory', queues: ['reports'] })],
      providers: [ReportProcessor, DataChangingProcessor],
    })
    class LimitedMemoryModule {}
    const app = await NestFactory.createApplicationContext(LimitedMemoryModule, { logger: false, abortOnError: false });
    try {
      await app.init();
      const queue = app.get(JobQueue);
      await expect(queue.enqueue('change', { step: 1 }, { queue: 'changes', owner: 'alice' })).rejects.toBeInstanceOf(UnknownQueueError);
      expect((await queue.enqueue('report', { pages: 1 }, { queue: 'reports', owner: 'alice' })).state).toMatch(/queued|running/);
    } finally {
      await app.close();
    }
  });
});

describe('one connection setting for both modules', () => {
  it("JobQueueModule without redis options takes BullModule.forRoot's connection and prefix", async () => {
    const redis = await RedisServer.start();
    const prefix = `s${randomUUID().slice(0, 8)}`;
    @Module({
      imports: [
        BullModule.forRoot({ connection: { host: '127.0.0.1', port: redis.port }, prefix }),
        BullModule.registerQueue({ name: 'reports' }),
        JobQueueModule.forRoot({ backend: 'bullmq' }),
      ],
      providers: [ReportProcessor],
    })
    class SharedConfigModule {}
    const app = await NestFactory.createApplicationContext(SharedConfigModule, { logger: false, abortOnError: false });
    try {
      await app.init();
      const queue = app.get(JobQueue);
      const job = await queue.enqueue('report', { pages: 1 }, { queue: 'reports', owner: 'alice' });
      const events: JobEvent[] = [];
      for await (const event of queue.follow(job.id, { queue: 'reports', owner: 'alice' })) events.push(event);
      expect(simplify(events)).toEqual([['started', { attempt: 1 }], ...reportEvents(1), ['completed', { result: { pages: 1 } }]]);
      // The job and its stream live on that server, under BullModule's prefix.
      expect(await app.get<Queue>(getQueueToken('reports')).getJob(job.id)).toBeDefined();
      const keys = new Redis(redis.url);
      try {
        expect(await keys.exists(new RedisKeys(prefix).events('reports', job.id!))).toBe(1);
      } finally {
        keys.disconnect();
      }
    } finally {
      await app.close();
      await redis.destroy();
    }
  });
});

describe('the bridge and BullMQ control flow (bullmq backend)', () => {
  let redis: RedisServer;
  let app: INestApplicationContext;
  let queue: JobQueue;
  const prefix = `f${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    redis = await RedisServer.start();
    app = await NestFactory.createApplicationContext(JobQueueModule.forRoot({ backend: 'bullmq', redis: { url: redis.url, prefix } }), {
      logger: false,
      abortOnError: false,
    });
    queue = app.get(JobQueue);
  });

  afterAll(async () => {
    await app?.close();
    await redis?.destroy();
  });

  async function follow(id: string, queueName: string): Promise<JobEvent[]> {
    const events: JobEvent[] = [];
    for await (const event of queue.follow(id, { queue: queueName })) events.push(event);
    return events;
  }

  it('a job the processor delays (moveToDelayed + DelayedError) runs again later: no failed in between', async () => {
    const worker = new JobQueueWorker(
      'delays',
      async (job: Job<{ delayed?: boolean }>, token?: string) => {
        await job.log(job.data.delayed ? 'second run' : 'first run');
        if (!job.data.delayed) {
          await job.updateData({ delayed: true });
          await job.moveToDelayed(Date.now() + 50, token);
          throw new DelayedError();
        }
        return 'done';
      },
      { connection: { url: redis.url }, prefix },
    );
    try {
      const job = await queue.enqueue('delayed', {}, { queue: 'delays', owner: 'alice' });
      const events: JobEvent[] = [];
      for await (const event of queue.follow(job.id, { queue: 'delays', owner: 'alice' })) events.push(event);
      expect(simplify(events)).toEqual([
        ['started', { attempt: 1 }],
        ['log', { message: 'first run' }],
        ['started', { attempt: 2 }],
        ['log', { message: 'second run' }],
        ['completed', { result: 'done' }],
      ]);
    } finally {
      await worker.close();
    }
  });

  it('a custom job id added again after the first job was removed gets a stream of its own', async () => {
    const worker = new JobQueueWorker('reruns', async (job: Job<{ run: number }>) => ({ run: job.data.run }), {
      connection: { url: redis.url },
      prefix,
    });
    const bull = new Queue('reruns', { connection: { url: redis.url }, prefix });
    const events = new QueueEvents('reruns', { connection: { url: redis.url }, prefix });
    await events.waitUntilReady();
    try {
      const first = await bull.add('rerun', { run: 1 }, { jobId: 'nightly' });
      // BullMQ's own end, not only the stream's: the terminal event is written before the worker
      // hands the result to BullMQ, and a job BullMQ still holds locked is not removed.
      expect(await first.waitUntilFinished(events, 10_000)).toEqual({ run: 1 });
      expect(simplify(await follow(first.id!, 'reruns')).at(-1)).toEqual(['completed', { result: { run: 1 } }]);
      expect(await bull.remove('nightly')).toBe(1);
      const second = await bull.add('rerun', { run: 2 }, { jobId: 'nightly' });
      // The processor really runs it (it is not answered with the earlier job's result). Until it
      // starts, a reader still sees the earlier job's ended stream under that id.
      expect(await second.waitUntilFinished(events, 10_000)).toEqual({ run: 2 });
      expect(simplify(await follow(second.id!, 'reruns'))).toEqual([
        ['started', { attempt: 1 }],
        ['completed', { result: { run: 2 } }],
      ]);
    } finally {
      await events.close();
      await worker.close();
      await bull.close();
    }
  });

  it('a job BullMQ finished whose stream is gone (expired) is unknown, not adopted as queued', async () => {
    const worker = new JobQueueWorker('expiring', async () => 'ok', { connection: { url: redis.url }, prefix });
    const bull = new Queue('expiring', { connection: { url: redis.url }, prefix });
    const keys = new Redis(redis.url);
    try {
      const job = await bull.add('expire', {});
      expect(simplify(await follow(job.id!, 'expiring')).at(-1)).toEqual(['completed', { result: 'ok' }]);
      await keys.del(new RedisKeys(prefix).meta('expiring', job.id!), new RedisKeys(prefix).events('expiring', job.id!)); // as when retention ran out
      await expect(queue.getJob(job.id!, { queue: 'expiring' })).rejects.toBeInstanceOf(JobNotFoundError);
      await expect(queue.follow(job.id!, { queue: 'expiring' }).next()).rejects.toBeInstanceOf(JobNotFoundError);
      expect(await keys.exists(new RedisKeys(prefix).meta('expiring', job.id!))).toBe(0);
    } finally {
      keys.disconnect();
      await worker.close();
      await bull.close();
    }
  });
});
