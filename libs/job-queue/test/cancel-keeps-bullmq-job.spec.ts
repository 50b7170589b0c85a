import 'reflect-metadata';
import { randomInt, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule, Processor, WorkerHost, getQueueToken } from '@nestjs/bullmq';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { JobAlreadyFinishedError, JobQueue, JobQueueModule, JobQueueWorker, type JobEvent } from 'nestjs-job-streams';
import { RedisServer } from '../../../test/support/redis-server.js';

BullModule.workerClass = JobQueueWorker;

const PAGES = 12;

/** The demo's report processor in small: a short page, then its progress and its log line. */
@Processor('reports')
class ReportProcessor extends WorkerHost {
  async process(job: Job<{ pages: number; failFirst?: boolean }>, _token?: string, signal?: AbortSignal): Promise<{ pages: number }> {
    const { pages, failFirst } = job.data;
    for (let page = 1; page <= pages; page++) {
      await delay(3, undefined, { signal });
      await job.updateProgress({ page, pages });
      await job.log(`page ${page} of ${pages}`);
      if (failFirst && job.attemptsMade === 0) throw new Error('first attempt fails');
    }
    return { pages };
  }
}

/**
 * Cancels of running jobs, sent from an api instance (no worker) while a worker instance runs
 * them: BullMQ keeps every job that started, in its failed set with the logs written so far. A
 * cancel used to call `queue.remove` after the cancel message, which erased the job whenever the
 * worker had moved it to failed first.
 */
describe('cancel keeps a started job in BullMQ (bullmq backend)', () => {
  let redis: RedisServer;
  let worker: INestApplicationContext;
  let api: INestApplicationContext;
  let jobs: JobQueue;
  let reports: Queue;
  let queueEvents: QueueEvents;

  beforeAll(async () => {
    redis = await RedisServer.start();
    const prefix = `c${randomUUID().slice(0, 8)}`;
    const bull = [BullModule.forRoot({ connection: { url: redis.url }, prefix }), BullModule.registerQueue({ name: 'reports' })];
    @Module({
      imports: [...bull, JobQueueModule.forRoot({ backend: 'bullmq', redis: { url: redis.url, prefix } })],
      providers: [ReportProcessor],
    })
    class WorkerModule {}
    @Module({ imports: [JobQueueModule.forRoot({ backend: 'bullmq', worker: false, redis: { url: redis.url, prefix } })] })
    class ApiModule {}
    worker = await NestFactory.createApplicationContext(WorkerModule, { logger: false, abortOnError: false });
    api = await NestFactory.createApplicationContext(ApiModule, { logger: false, abortOnError: false });
    await Promise.all([worker.init(), api.init()]);
    jobs = api.get(JobQueue);
    reports = worker.get<Queue>(getQueueToken('reports'));
    queueEvents = new QueueEvents('reports', { connection: { url: redis.url }, prefix });
    await queueEvents.waitUntilReady();
  });

  afterAll(async () => {
    await queueEvents?.close();
    await api?.close();
    await worker?.close();
    await redis?.destroy();
  });

  /** Resolves when BullMQ has moved job `id` to completed or failed. */
  function bullMqEnd(id: string): Promise<void> {
    return new Promise((resolve) => {
      const done = ({ jobId }: { jobId: string }): void => {
        if (jobId !== id) return;
        queueEvents.off('failed', done);
        queueEvents.off('completed', done);
        resolve();
      };
      queueEvents.on('failed', done);
      queueEvents.on('completed', done);
    });
  }

  it('50 cancels at random points of a running job: each job stays in BullMQ, failed with its logs (or completed first)', async () => {
    const address = { queue: 'reports', owner: 'alice' };
    let cancelledRunning = 0;
    for (let round = 0; round < 50; round++) {
      const { id } = await jobs.enqueue('report', { pages: PAGES }, address);
      const ended = bullMqEnd(id);
      // A random point of the run: after `started` and up to every page's progress and log.
      const seen = randomInt(1, 2 * PAGES + 1);
      const events: JobEvent[] = [];
      for await (const event of jobs.follow(id, address)) {
        events.push(event);
        if (events.length >= seen) break;
      }
      let cancelled = true;
      await jobs.cancel(id, { ...address, reason: 'stop' }).catch((error: unknown) => {
        // The job completed before the cancel: nothing to cancel, BullMQ keeps it as completed.
        if (!(error instanceof JobAlreadyFinishedError)) throw error;
        cancelled = false;
      });
      await ended;
      const stream: JobEvent[] = [];
      for await (const event of jobs.follow(id, address)) stream.push(event);
      const bullJob = await reports.getJob(id);
      expect({ round, kept: bullJob !== undefined }).toEqual({ round, kept: true });
      const logs = (await reports.getJobLogs(id)).logs;
      // Every log line of the stream is in BullMQ's log (a line written after the cancel's terminal event is in BullMQ only).
      const streamed = stream.filter((event) => event.type === 'log').map((event) => (event.data as { message: string }).message);
      expect(logs.slice(0, streamed.length)).toEqual(streamed);
      if (cancelled) {
        cancelledRunning++;
        expect(stream.at(-1)).toMatchObject({ type: 'cancelled', data: { reason: 'stop' } });
        // BullMQ records what the processor did: it threw on the abort, unless the cancel came
        // after its last page (then it returned, as it would have without the module).
        if (logs.length < PAGES) {
          expect(await bullJob!.getState()).toBe('failed');
          expect(bullJob!.failedReason).toBeTruthy();
        } else {
          expect(['failed', 'completed']).toContain(await bullJob!.getState());
        }
      } else {
        expect(stream.at(-1)).toMatchObject({ type: 'completed' });
        expect(await bullJob!.getState()).toBe('completed');
      }
    }
    // The points are random but almost all of them fall in the run.
    expect(cancelledRunning).toBeGreaterThan(25);
  }, 120_000);

  it('a job cancelled while it waits out a retry backoff fails in BullMQ at once, logs kept (not after the backoff)', async () => {
    const delayed = new Promise<void>((resolve) => {
      const onDelayed = ({ jobId }: { jobId: string }): void => {
        if (jobId !== added.id) return;
        queueEvents.off('delayed', onDelayed);
        resolve();
      };
      queueEvents.on('delayed', onDelayed);
    });
    const added = await reports.add('report', { pages: 1, failFirst: true }, { attempts: 2, backoff: { type: 'fixed', delay: 600_000 } });
    await delayed;
    const ended = bullMqEnd(added.id!);
    await jobs.cancel(added.id!, { queue: 'reports', reason: 'stop' });
    await ended;
    const bullJob = (await reports.getJob(added.id!))!;
    expect(await bullJob.getState()).toBe('failed');
    expect((await reports.getJobLogs(added.id!)).logs).toEqual(['page 1 of 1']);
    const stream: JobEvent[] = [];
    for await (const event of jobs.follow(added.id!, { queue: 'reports' })) stream.push(event);
    expect(stream.map((event) => event.type)).toEqual(['started', 'progress', 'log', 'cancelled']);
  });

  it('a job cancelled before any worker starts it is removed from BullMQ and never runs', async () => {
    await reports.pause();
    try {
      const address = { queue: 'reports', owner: 'alice' };
      const { id } = await jobs.enqueue('report', { pages: 1 }, address);
      expect(['waiting', 'paused']).toContain(await reports.getJobState(id));
      await jobs.cancel(id, { ...address, reason: 'not needed' });
      expect(await reports.getJob(id)).toBeUndefined();
      const stream: JobEvent[] = [];
      for await (const event of jobs.follow(id, address)) stream.push(event);
      expect(stream.map((event) => [event.type, event.data])).toEqual([['cancelled', { reason: 'not needed' }]]);
    } finally {
      await reports.resume();
    }
  });
});
