import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Module, type DynamicModule, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule } from '@nestjs/bullmq';
import { Queue, Worker, type Job, type QueueOptions, type WorkerOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { JobNotFoundError, JobQueue, JobQueueModule, JobQueueWorker, bridgeLeaseHolder, type JobEvent } from 'nestjs-job-streams';
import { BusyStreamPause } from '../src/backends/bullmq/foreign-workers/busy-stream-pause.js';
import { AppProcess } from '../../../test/support/app-process.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisServer } from '../../../test/support/redis-server.js';

/**
 * Jobs run by workers that do not load this module (here a plain BullMQ `Worker`, as a service in
 * another language would run them) are bridged from BullMQ's queue events stream by the processes
 * that do: one of them at a time reads each queue's stream.
 */

interface ReportData {
  pages: number;
  pageMs?: number;
  failAtPage?: number;
  /** Wait for this gate (see {@link gates}) before the first page. */
  gate?: string;
}

/** Gates a test opens to let a gated report go on, by name. */
const gates = new Map<string, { open: () => void; opened: Promise<void> }>();
function gate(name: string): () => void {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  gates.set(name, { open, opened });
  return open;
}

/** A plain BullMQ processor (no code of this library): progress per page, a log line BullMQ keeps to itself. */
async function report(job: Job<ReportData>): Promise<{ pages: number }> {
  const { pages, pageMs = 0, failAtPage } = job.data;
  if (job.data.gate) await gates.get(job.data.gate)!.opened;
  for (let page = 1; page <= pages; page++) {
    if (pageMs) await delay(pageMs);
    await job.updateProgress({ page, pages });
    await job.log(`page ${page} of ${pages}`);
    if (page === failAtPage) throw new Error(`Report failed at page ${page}`);
  }
  return { pages };
}

function progressEvents(pages: number, from = 1): Array<[string, unknown]> {
  const events: Array<[string, unknown]> = [];
  for (let page = from; page <= pages; page++) events.push(['progress', { page, pages }]);
  return events;
}

/** The stream of a 2-page report that failed at page 2 in both of its 2 attempts. */
function failedTwiceAtPage2(): Array<[string, unknown]> {
  return [
    ['started', { attempt: 1 }],
    ...progressEvents(2),
    ['started', { attempt: 2 }],
    ...progressEvents(2),
    ['failed', { error: { message: 'Report failed at page 2' } }],
  ];
}

function simplify(events: JobEvent[]): Array<[string, unknown]> {
  return events.map((event) => [event.type, event.data]);
}

/** An application with this module (api role: it runs no job) and the `reports` queue registered. */
function apiModule(redisUrl: string, prefix: string, options: { worker?: boolean } = {}): DynamicModule {
  @Module({})
  class ApiModule {}
  return {
    module: ApiModule,
    imports: [
      BullModule.forRoot({ connection: { url: redisUrl }, prefix }),
      BullModule.registerQueue({ name: 'reports' }),
      JobQueueModule.forRoot({ backend: 'bullmq', worker: options.worker ?? false }),
    ],
  };
}

describe('the foreign-worker bridge: jobs of workers without this module, from BullMQ queue events (bullmq backend)', () => {
  let redis: RedisServer;
  let prefix: string;
  let reports: Queue;
  let admin: Redis;
  const apps: INestApplicationContext[] = [];
  const workers: Worker[] = [];
  const processes: AppProcess[] = [];

  async function startApi(options: { worker?: boolean } = {}): Promise<JobQueue> {
    const app = await NestFactory.createApplicationContext(apiModule(redis.url, prefix, options), { logger: false, abortOnError: false });
    await app.init();
    apps.push(app);
    return app.get(JobQueue);
  }

  /** A plain BullMQ worker, the kind this module is not loaded in. */
  async function foreignWorker(name = 'foreign', options: Partial<WorkerOptions> = {}): Promise<Worker> {
    const worker = new Worker('reports', report, { connection: { url: redis.url }, prefix, name, ...options });
    await worker.waitUntilReady();
    workers.push(worker);
    return worker;
  }

  async function follow(queue: JobQueue, id: string, owner?: string): Promise<JobEvent[]> {
    const events: JobEvent[] = [];
    for await (const event of queue.follow(id, { queue: 'reports', owner })) events.push(event);
    return events;
  }

  /**
   * Resolves with the holder once this prefix's bridge of `reports` is held by a process and reads
   * the stream (it records its position after its first read; a job added before that could start
   * ahead of where the bridge begins).
   */
  async function leaseHeld(): Promise<string> {
    for (;;) {
      const [holder, position] = await Promise.all([
        admin.get(`${prefix}:{bridge:reports}:lease`),
        admin.get(`${prefix}:{bridge:reports}:position`),
      ]);
      if (holder && position) return holder;
      await delay(20);
    }
  }

  /** The job's stream once the bridge has given it one (a bridge that took a lease over recovers a gap first). */
  async function bridged(queue: JobQueue, id: string): Promise<JobEvent[]> {
    for (;;) {
      try {
        await queue.getJob(id, { queue: 'reports' });
        return await follow(queue, id);
      } catch (error) {
        if (!(error instanceof JobNotFoundError)) throw error;
        await delay(20);
      }
    }
  }

  beforeAll(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.url);
  });

  afterEach(async () => {
    for (const { open } of gates.values()) open(); // a failed test must not leave a worker waiting
    await Promise.all(workers.splice(0).map((worker) => worker.close()));
    await Promise.all(processes.splice(0).map((process) => process.stop()));
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await reports?.close();
  });

  afterAll(async () => {
    admin?.disconnect();
    await redis?.destroy();
  });

  async function freshQueue(options: Partial<QueueOptions> = {}): Promise<void> {
    prefix = `f${randomUUID().slice(0, 8)}`;
    reports = new Queue('reports', { connection: { url: redis.url }, prefix, ...options });
    await reports.waitUntilReady();
  }

  it("a plain worker's job: started, every progress in order once, the terminal event; for owners (enqueue) and system reads (queue.add)", async () => {
    await freshQueue();
    const queue = await startApi();
    // The lease names the process that holds it: this one, where the api runs.
    expect(bridgeLeaseHolder(await leaseHeld())).toEqual({ host: hostname(), pid: process.pid });
    await foreignWorker();
    const owned = await queue.enqueue('report', { pages: 6 }, { queue: 'reports', owner: 'alice' });
    const added = await reports.add('report', { pages: 3 });
    const [ownedEvents, addedEvents] = await Promise.all([follow(queue, owned.id, 'alice'), follow(queue, added.id!)]);
    // No `log` events: BullMQ keeps a job's log in a list that emits nothing.
    expect(simplify(ownedEvents)).toEqual([['started', { attempt: 1 }], ...progressEvents(6), ['completed', { result: { pages: 6 } }]]);
    expect(simplify(addedEvents)).toEqual([['started', { attempt: 1 }], ...progressEvents(3), ['completed', { result: { pages: 3 } }]]);
    expect(await queue.getJob(owned.id, { queue: 'reports', owner: 'alice' })).toMatchObject({
      name: 'report',
      state: 'completed',
      attempt: 1,
      result: { pages: 6 },
    });
    expect(await follow(queue, owned.id, 'alice')).toEqual(ownedEvents);
  });

  it("a plain worker process's burst of updates (awaited one by one): every one once, in order, read in batches once the stream is busy; the bridge counts its reads and entries", async () => {
    await freshQueue();
    const pauses = jest.spyOn(BusyStreamPause.prototype, 'afterRead');
    try {
      const queue = await startApi();
      await leaseHeld();
      // A process of its own, so that its updates come as fast as a real worker's (several thousand a second).
      const worker = await AppProcess.script(
        'test/e2e/fixtures/plain-bullmq-worker.mjs',
        { REDIS_URL: redis.url, JOB_QUEUE_PREFIX: prefix, REPORT_LOGS: 'false' },
        /Plain BullMQ worker ready/,
      );
      processes.push(worker);
      const before = queue.bridgeStatus()[0];
      const job = await queue.enqueue('report', { pages: 3000, pageMs: 0 }, { queue: 'reports', owner: 'alice' });
      const events = await follow(queue, job.id, 'alice');
      expect(simplify(events)).toEqual([['started', { attempt: 1 }], ...progressEvents(3000), ['completed', { result: { pages: 3000 } }]]);
      const after = queue.bridgeStatus()[0];
      // At least active, every progress and completed were read (BullMQ writes a few more entries per job).
      expect(after.entriesRead - before.entriesRead).toBeGreaterThanOrEqual(3002);
      expect(after.reads - before.reads).toBeGreaterThan(0);
      expect(after.reads - before.reads).toBeLessThanOrEqual(after.entriesRead - before.entriesRead);
      // The bridge's own pause was asked after its reads, and found the stream busy (3000 updates well above 1,500 a second).
      const decided = pauses.mock.results.map((result) => result.value as number);
      expect(decided.length).toBeGreaterThanOrEqual(after.reads - before.reads);
      expect(Math.max(...decided)).toBeGreaterThan(0);
    } finally {
      pauses.mockRestore();
    }
  });

  it('retries: each attempt starts with started, only the last failure ends the stream', async () => {
    await freshQueue();
    const queue = await startApi();
    await leaseHeld();
    await foreignWorker();
    const job = await queue.enqueue('report', { pages: 2, failAtPage: 2 }, { queue: 'reports', owner: 'alice', attempts: 2 });
    const events = await follow(queue, job.id, 'alice');
    expect(simplify(events)).toEqual(failedTwiceAtPage2());
    expect(await queue.getJob(job.id, { queue: 'reports', owner: 'alice' })).toMatchObject({ state: 'failed', attempt: 2 });
  });

  it('a retry with a backoff: the job reads as queued while BullMQ holds it delayed, then the next attempt starts', async () => {
    await freshQueue();
    const queue = await startApi();
    await leaseHeld();
    await foreignWorker();
    const BACKOFF_MS = 4000;
    const added = await reports.add('report', { pages: 2, failAtPage: 2 }, { attempts: 2, backoff: { type: 'fixed', delay: BACKOFF_MS } });
    const id = added.id!;
    // The first attempt fails at once; BullMQ delays the job for the backoff, and the job reads as
    // queued meanwhile, its attempt still the first (added with plain BullMQ, the job is not found
    // until the bridge starts its first attempt).
    const during = await pollUntil(
      async () => queue.getJob(id, { queue: 'reports' }).catch(() => undefined),
      (info) => info?.state === 'queued' && info.attempt === 1,
      BACKOFF_MS - 1000,
      10,
    );
    expect(during).toMatchObject({ state: 'queued', attempt: 1 });
    expect(await reports.getJobState(id)).toBe('delayed');
    const events = await follow(queue, id);
    expect(simplify(events)).toEqual(failedTwiceAtPage2());
    expect(await queue.getJob(id, { queue: 'reports' })).toMatchObject({ state: 'failed', attempt: 2 });
  });

  it("one read with the end of an attempt the bridge does not write and a foreign worker's next attempt: the next one is written whole", async () => {
    await freshQueue();
    const queue = await startApi();
    await leaseHeld();
    // A job the module knows (its metadata, no attempt yet): progress reported for it before an
    // attempt of its own started is not the bridge's to write (the script answers 'module').
    const job = await queue.enqueue('report', { pages: 2 }, { queue: 'reports', owner: 'alice' });
    // Then a foreign worker's attempt. All in one transaction, so the bridge reads them in one
    // batch: the answer about the first entry comes back while the batch is being applied, after
    // the `active` of the next attempt was read, and must not make the bridge skip that attempt.
    const events = `${prefix}:reports:events`;
    await admin
      .multi()
      .xadd(events, '*', 'event', 'progress', 'jobId', job.id, 'data', JSON.stringify({ page: 0, pages: 2 }))
      .xadd(events, '*', 'event', 'active', 'jobId', job.id, 'prev', 'waiting')
      .xadd(events, '*', 'event', 'progress', 'jobId', job.id, 'data', JSON.stringify({ page: 1, pages: 2 }))
      .xadd(events, '*', 'event', 'progress', 'jobId', job.id, 'data', JSON.stringify({ page: 2, pages: 2 }))
      .xadd(events, '*', 'event', 'completed', 'jobId', job.id, 'returnvalue', JSON.stringify({ pages: 2 }), 'prev', 'active')
      .exec();
    // Ended (or not, in time): the stream as it is then.
    await pollUntil(
      async () => (await queue.getJob(job.id, { queue: 'reports', owner: 'alice' })).state,
      (state) => state === 'completed',
      5000,
      20,
    );
    const all = (await queue.readEvents(job.id, { queue: 'reports', owner: 'alice', after: '0' })).events;
    expect(simplify(all)).toEqual([['started', { attempt: 1 }], ...progressEvents(2), ['completed', { result: { pages: 2 } }]]);
  });

  it("mixed: the module's own worker and a plain one on the same queue; every job has one writer, no event twice", async () => {
    await freshQueue();
    const queue = await startApi({ worker: true });
    await leaseHeld();
    const ours = new JobQueueWorker('reports', report, { connection: { url: redis.url }, prefix, name: 'bridged' });
    workers.push(ours);
    await ours.waitUntilReady();
    await foreignWorker('foreign');
    const jobs = await Promise.all(
      Array.from({ length: 16 }, () => queue.enqueue('report', { pages: 4, pageMs: 5 }, { queue: 'reports', owner: 'alice' })),
    );
    const streams = await Promise.all(jobs.map((job) => follow(queue, job.id, 'alice')));
    const ranBy = new Set<string>();
    for (const [index, events] of streams.entries()) {
      const by = (await reports.getJob(jobs[index].id))!.processedBy!;
      ranBy.add(by);
      const body: Array<[string, unknown]> =
        by === 'bridged'
          ? progressEvents(4).flatMap(([type, data]) => [
              [type, data] as [string, unknown],
              ['log', { message: `page ${(data as { page: number }).page} of 4` }] as [string, unknown],
            ])
          : progressEvents(4);
      expect({ by, events: simplify(events) }).toEqual({
        by,
        events: [['started', { attempt: 1 }], ...body, ['completed', { result: { pages: 4 } }]],
      });
    }
    expect([...ranBy].sort()).toEqual(['bridged', 'foreign']);
  });

  it("a foreign worker that dies mid-job: BullMQ's stalled check runs it again; the stream shows the new attempt's started, then its events", async () => {
    await freshQueue();
    const queue = await startApi();
    await leaseHeld();
    const lock = { lockDuration: 1000, stalledInterval: 1000 };
    const dying = await foreignWorker('dying', lock);
    const job = await queue.enqueue('report', { pages: 3, pageMs: 300 }, { queue: 'reports', owner: 'alice' });
    for (let after = '0'; ;) {
      const page = await queue.readEvents(job.id, { queue: 'reports', owner: 'alice', after, waitMs: 5000 });
      if (page.events.some((event) => event.type === 'progress')) break;
      after = page.next;
    }
    // Closing by force stops its lock renewal, as the death of its process would; the job stays active.
    await dying.close(true);
    await foreignWorker('survivor', lock);
    const events = simplify(await follow(queue, job.id, 'alice'));
    const rerun = events.findIndex(([type, data]) => type === 'started' && (data as { attempt: number }).attempt === 2);
    expect(events[0]).toEqual(['started', { attempt: 1 }]);
    expect(events.slice(1, rerun).every(([type]) => type === 'progress')).toBe(true);
    expect(rerun).toBeGreaterThan(1);
    expect(events.slice(rerun)).toEqual([['started', { attempt: 2 }], ...progressEvents(3), ['completed', { result: { pages: 3 } }]]);
    expect(await queue.getJob(job.id, { queue: 'reports', owner: 'alice' })).toMatchObject({ state: 'completed', attempt: 2 });
  });

  it('takeover: the process holding the bridge stops mid-job, another takes over where it stopped; nothing lost or repeated', async () => {
    await freshQueue();
    await startApi();
    const firstHolder = await leaseHeld();
    const second = await startApi();
    await foreignWorker();
    const open = gate(`takeover-${prefix}`);
    const job = await second.enqueue('report', { pages: 30, pageMs: 20, gate: `takeover-${prefix}` }, { queue: 'reports', owner: 'alice' });
    const following = follow(second, job.id, 'alice');
    open();
    // Stop the holder once some progress went through it.
    for (let after = '0', progress = 0; progress < 5;) {
      const page = await second.readEvents(job.id, { queue: 'reports', owner: 'alice', after, waitMs: 5000 });
      progress += page.events.filter((event) => event.type === 'progress').length;
      after = page.next;
    }
    await apps.shift()!.close();
    const events = await following;
    expect(simplify(events)).toEqual([['started', { attempt: 1 }], ...progressEvents(30), ['completed', { result: { pages: 30 } }]]);
    expect(await leaseHeld()).not.toEqual(firstHolder);
    expect(second.bridgeStatus()).toEqual([expect.objectContaining({ queue: 'reports', leading: true, takeovers: 1, gaps: 0 })]);
  });

  it('gap: entries trimmed before any bridge read them give the affected jobs a gap event; the others stay whole', async () => {
    await admin.config('SET', 'stream-node-max-entries', '10'); // lets MAXLEN ~ trim close to the cap
    try {
      await freshQueue();
      let queue = await startApi();
      await leaseHeld();
      await foreignWorker();
      const whole = await queue.enqueue('report', { pages: 3 }, { queue: 'reports', owner: 'alice' });
      expect(simplify(await follow(queue, whole.id, 'alice'))).toEqual([
        ['started', { attempt: 1 }],
        ...progressEvents(3),
        ['completed', { result: { pages: 3 } }],
      ]);
      // Every bridge stops; jobs run on, well past the stream's cap (BullMQ's `streams.events.maxLen`,
      // which every Queue instance writes to the queue's meta hash when it starts).
      await Promise.all(apps.splice(0).map((app) => app.close()));
      await admin.hset(`${prefix}:reports:meta`, 'opts.maxLenEvents', 30);
      const finished = new Promise<void>((resolve) => workers[0].on('completed', (job) => job.data.pages === 4000 && resolve()));
      const done = await reports.add('report', { pages: 4000 });
      await finished;
      const open = gate(`gap-${prefix}`);
      const active = new Promise<void>((resolve) => workers[0].on('active', (job) => job.data.gate === `gap-${prefix}` && resolve()));
      const running = await reports.add('report', { pages: 3, gate: `gap-${prefix}` });
      await active;
      for (let i = 0; i < 60; i++) await reports.add('filler', { pages: 0 }, { delay: 600_000 }); // entries that push the stream on
      // Then, kept whole, more than one read's worth of entries (500): the bridge reads a full batch
      // right after its takeover and checks for trimmed entries again; the gap must not be reported twice.
      await admin.hset(`${prefix}:reports:meta`, 'opts.maxLenEvents', 10_000);
      for (let i = 0; i < 600; i++) await reports.add('filler', { pages: 0 }, { delay: 600_000 });

      queue = await startApi();
      await leaseHeld();
      const doneEvents = simplify(await bridged(queue, done.id!));
      expect(doneEvents[0]).toEqual(['started', { attempt: 1 }]);
      expect(doneEvents[1][0]).toBe('gap');
      expect(doneEvents.at(-1)).toEqual(['completed', { result: { pages: 4000 } }]);
      open();
      const runningEvents = simplify(await bridged(queue, running.id!));
      expect(runningEvents.slice(0, 2).map(([type]) => type)).toEqual(['started', 'gap']);
      expect(runningEvents.slice(2)).toEqual([...progressEvents(3), ['completed', { result: { pages: 3 } }]]);
      expect(queue.bridgeStatus()).toEqual([expect.objectContaining({ queue: 'reports', leading: true, takeovers: 1, gaps: 1 })]);
      // A job bridged whole before the gap keeps its stream as it was.
      expect(simplify(await follow(queue, whole.id, 'alice')).map(([type]) => type)).not.toContain('gap');
    } finally {
      await admin.config('SET', 'stream-node-max-entries', '100');
    }
  });
});
