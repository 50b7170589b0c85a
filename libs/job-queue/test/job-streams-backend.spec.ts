import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Queue, Worker, createRedisBackend, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { IncompatibleBullMqError, JobQueue, JobQueueModule, JobQueueWorker, jobStreamsBackend, type JobEvent } from 'nestjs-job-streams';
import { RedisMonitor } from '../../../test/support/redis-monitor.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { checkBullCommands, installedBullCommands } from '../src/backends/bullmq/bullmq-commands.js';
import { JobScripts } from '../src/backends/bullmq/job-scripts.js';
import { composedScriptsOf } from '../src/backends/bullmq/job-streams-backend.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';

/** A report processor as a team writes one: per page one progress call and one log line. */
async function pagesProcessor(job: Job<{ pages: number }>): Promise<{ pages: number }> {
  const { pages } = job.data;
  for (let page = 1; page <= pages; page++) {
    await job.updateProgress({ page, pages });
    await job.log(`page ${page} of ${pages}`);
  }
  return { pages };
}

/** The commands a client sent to Redis (not those a script ran) that name `jobId` in their arguments. */
interface JobCommands {
  /** Script calls: EVAL, EVALSHA, FCALL and their read-only forms. */
  scripts: number;
  /** Every command. */
  all: number;
}

describe('JobStreamsBackend: one script per updateProgress / log call', () => {
  let redis: RedisServer;
  let app: INestApplicationContext;
  let jobQueue: JobQueue;
  let bridged: JobQueueWorker;
  /** JobQueueWorkers given a backend factory: BullMQ's default one, and the module's own. */
  let givenFactories: Record<'pages-own' | 'pages-given', JobQueueWorker>;
  let plain: Worker;
  let plainQueue: Queue;
  let client: Redis;
  const prefix = `s${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    redis = await RedisServer.start();
    client = new Redis(redis.url);
    app = await NestFactory.createApplicationContext(
      // No foreign-worker bridge: the plain worker's calls stay BullMQ's alone, as without the module.
      JobQueueModule.forRoot({
        backend: 'bullmq',
        queues: ['pages', 'pages-own', 'pages-given'],
        bridgeForeignWorkers: false,
        redis: { url: redis.url, prefix },
      }),
      { logger: false, abortOnError: false },
    );
    jobQueue = app.get(JobQueue);
    const connection = { url: redis.url };
    bridged = new JobQueueWorker('pages', pagesProcessor, { connection, prefix });
    givenFactories = {
      'pages-own': new JobQueueWorker('pages-own', pagesProcessor, { connection, prefix }, createRedisBackend),
      'pages-given': new JobQueueWorker('pages-given', pagesProcessor, { connection, prefix }, jobStreamsBackend()),
    };
    plain = new Worker('plain', pagesProcessor, { connection, prefix });
    plainQueue = new Queue('plain', { connection, prefix });
    await Promise.all([bridged.waitUntilReady(), plain.waitUntilReady(), plainQueue.waitUntilReady()]);
  });

  afterAll(async () => {
    await Promise.all([
      bridged?.close(),
      plain?.close(),
      plainQueue?.close(),
      ...Object.values(givenFactories ?? {}).map((w) => w.close()),
    ]);
    await app?.close();
    client?.disconnect();
    await redis?.destroy();
  });

  /** Resolves with the job id once `worker` completed the job `start` added (BullMQ's own event: no Redis call). */
  function completedBy(worker: Worker, start: () => Promise<string>): Promise<string> {
    return new Promise((resolve, reject) => {
      let id: string | undefined;
      const done: string[] = [];
      const onCompleted = (job: Job): void => {
        done.push(job.id!);
        if (id !== undefined && done.includes(id)) {
          worker.off('completed', onCompleted);
          resolve(id);
        }
      };
      worker.on('completed', onCompleted);
      start().then((added) => {
        id = added;
        if (done.includes(id)) onCompleted({ id } as Job);
      }, reject);
    });
  }

  /**
   * Counts, with MONITOR, the commands that name the job in their arguments from its enqueue until
   * its worker reported it completed: every command of the job (its scripts name its keys), and
   * nothing of the workers' polling. Read by the suite's own MONITOR reader (ioredis' monitor mode
   * can take a monitored line for a reply while it switches into that mode).
   */
  async function commandsOf(run: () => Promise<string>): Promise<JobCommands> {
    const monitor = await RedisMonitor.start(redis.url, (command) => command.source !== 'lua');
    try {
      const id = await run();
      await monitor.caughtUp(client);
      const ofJob = monitor.commands.filter((command) => command.args.some((arg) => arg.includes(id)));
      return {
        scripts: ofJob.filter((command) => /^(EVAL|EVALSHA|FCALL)(_RO)?$/.test(command.name)).length,
        all: ofJob.length,
      };
    } finally {
      monitor.stop();
    }
  }

  const bridgedJob = (pages: number) => () =>
    completedBy(bridged, async () => (await jobQueue.enqueue('report', { pages }, { queue: 'pages', owner: 'alice' })).id);
  const jobOf = (queue: 'pages-own' | 'pages-given') => (pages: number) => () =>
    completedBy(givenFactories[queue], async () => (await jobQueue.enqueue('report', { pages }, { queue, owner: 'alice' })).id);
  const plainJob = (pages: number) => () =>
    completedBy(plain, async () => (await plainQueue.add('report', { pages }, { jobId: randomUUID() })).id!);

  /** Commands per page: the difference between a job of 21 pages and one of 1 (what a job costs once cancels out). */
  async function perPage(job: (pages: number) => () => Promise<string>): Promise<JobCommands> {
    const one = await commandsOf(job(1));
    const many = await commandsOf(job(21));
    return { scripts: (many.scripts - one.scripts) / 20, all: (many.all - one.all) / 20 };
  }

  it("a bridged page (updateProgress + log) sends exactly BullMQ's own commands: one script per call", async () => {
    // Warm both paths up: script loading (EVAL after NOSCRIPT) is a one-off of each connection.
    await commandsOf(bridgedJob(1));
    await commandsOf(plainJob(1));
    const withModule = await perPage(bridgedJob);
    const withoutModule = await perPage(plainJob);
    expect(withoutModule).toEqual({ scripts: 2, all: 2 });
    expect(withModule).toEqual(withoutModule);
  });

  it('a JobQueueWorker given a backend factory composes on the backends it makes (once, when they compose already)', async () => {
    for (const queue of ['pages-own', 'pages-given'] as const) {
      await commandsOf(jobOf(queue)(1));
      expect({ queue, ...(await perPage(jobOf(queue))) }).toEqual({ queue, scripts: 2, all: 2 });
      const id = await jobOf(queue)(1)();
      const page = await jobQueue.readEvents(id, { queue, owner: 'alice' });
      expect(page.events.map((event: JobEvent) => event.type)).toEqual(['started', 'progress', 'log', 'completed']);
    }
    // A factory of another kind of backend has nothing to compose with: refused when the worker is made.
    expect(
      () => new JobQueueWorker('pages-odd', pagesProcessor, { connection: { url: redis.url }, prefix }, (() => ({})) as never),
    ).toThrow(/must make BullMQ Redis backends/);
  });

  it("the page's calls are in the job's stream, in call order, once; BullMQ sees them as without the module", async () => {
    const id = await bridgedJob(3)();
    const page = await jobQueue.readEvents(id, { queue: 'pages', owner: 'alice' });
    const pages = [1, 2, 3].flatMap((n) => [
      ['progress', { page: n, pages: 3 }],
      ['log', { message: `page ${n} of 3` }],
    ]);
    expect(page.events.map((event: JobEvent) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ...pages,
      ['completed', { result: { pages: 3 } }],
    ]);
    const pagesQueue = new Queue('pages', { connection: client, prefix });
    try {
      expect((await pagesQueue.getJob(id))!.progress).toEqual({ page: 3, pages: 3 });
      expect(await pagesQueue.getJobLogs(id)).toEqual({ logs: ['page 1 of 3', 'page 2 of 3', 'page 3 of 3'], count: 3 });
    } finally {
      await pagesQueue.close();
    }
  });
});

describe('the composed script', () => {
  let redis: RedisServer;
  let client: Redis;
  const prefix = `c${randomUUID().slice(0, 8)}`;
  const keys = new RedisKeys(prefix);

  beforeAll(async () => {
    redis = await RedisServer.start();
    client = new Redis(redis.url);
  });

  afterAll(async () => {
    client?.disconnect();
    await redis?.destroy();
  });

  /** A job BullMQ has, whose attempt 1 started (`started` in its stream), and the composed `updateProgress` on `client`. */
  async function startedJob(): Promise<{ id: string; meta: string; events: string; bullKeys: string[] }> {
    const queue = new Queue('q', { connection: client, prefix });
    const id = randomUUID();
    await queue.add('report', {}, { jobId: id });
    await queue.close();
    const meta = keys.meta('q', id);
    const events = keys.events('q', id);
    const started = await new JobScripts(client).startAttempt(meta, events, Date.now(), 100, randomUUID(), {
      name: 'report',
      maxAttempts: 1,
      createdAt: Date.now(),
    });
    expect(started.status).toBe('ok');
    const script = composedScriptsOf(installedBullCommands()).updateProgress;
    client.defineCommand('composedUpdateProgress', { numberOfKeys: script.bullmq.keys + 2, lua: script.lua });
    return { id, meta, events, bullKeys: [`${prefix}:q:${id}`, `${prefix}:q:events`, `${prefix}:q:meta`] };
  }

  /** The composed updateProgress as the backend sends it: BullMQ's keys and arguments first, then the stream write's. */
  const composed = (args: Array<string | number>): Promise<unknown> =>
    (client as unknown as { composedUpdateProgress(...args: Array<string | number>): Promise<unknown> }).composedUpdateProgress(...args);
  const progressCall = (
    job: { id: string; meta: string; events: string; bullKeys: string[] },
    writer: string,
    seq: number,
    attempt: number,
    progress: string,
  ): Array<string | number> => [...job.bullKeys, job.meta, job.events, job.id, progress, writer, seq, 100, attempt, 'progress', progress];

  it('a call sent twice (same writer and sequence number, as ioredis resends after a reconnect) is appended once', async () => {
    const job = await startedJob();
    const { id, events } = job;
    const writer = randomUUID();
    const progress = JSON.stringify({ page: 1 });
    const args = progressCall(job, writer, 1, 1, progress);
    const first = await composed(args);
    const again = await composed(args);
    // BullMQ's reply alone when the event went in.
    expect(first).toBe(0);
    // BullMQ's part runs again, as it would without the module; the stream's does not.
    expect(again).toEqual([0, ['dup']]);
    const entries = await client.xrange(events, '-', '+');
    expect(entries.map(([, fields]) => fields[1])).toEqual(['started', 'progress']);
    expect(await client.hget(`${prefix}:q:${id}`, 'progress')).toBe(progress);
    // The next call of the writer goes in.
    const next = JSON.stringify({ page: 2 });
    expect(await composed(progressCall(job, writer, 2, 1, next))).toBe(0);
    expect(await client.xlen(events)).toBe(3);
  });

  it("a call BullMQ refuses (its job is gone) gets BullMQ's reply alone and appends nothing", async () => {
    const job = await startedJob();
    await client.del(job.bullKeys[0]);
    const progress = JSON.stringify(7);
    expect(await composed(progressCall(job, randomUUID(), 1, 1, progress))).toBe(-1);
    expect(await client.xlen(job.events)).toBe(1);
  });

  it('a call of a superseded attempt, or after the terminal event, is refused by the stream, not by BullMQ', async () => {
    const job = await startedJob();
    const { meta, events } = job;
    const progress = JSON.stringify(1);
    expect(await composed(progressCall(job, randomUUID(), 1, 2, progress))).toEqual([0, ['stale']]);
    await client.hset(meta, 'terminal', '1-1');
    expect(await composed(progressCall(job, randomUUID(), 1, 1, progress))).toEqual([0, ['final']]);
    expect(await client.xlen(events)).toBe(1);
  });
});

describe("the installed bullmq's commands (no Redis)", () => {
  const real = installedBullCommands();

  it('are taken from the installed package and fit the shape the backend composes with', () => {
    expect(real.version).toMatch(/^6\./);
    expect(real.commands.updateProgress).toMatchObject({ name: 'updateProgress', keys: 3, args: 2 });
    expect(real.commands.addLog).toMatchObject({ name: 'addLog', keys: 2, args: 3 });
    expect(real.commands.updateProgress.content).toMatch(/^--\[\[/);
  });

  /** BullMQ's scripts as the real package ships them, with one command replaced (or removed, with `undefined`). */
  const scriptsWith = (name: 'updateProgress' | 'addLog', script: unknown): Record<string, unknown> => ({
    updateProgress: real.commands.updateProgress,
    addLog: real.commands.addLog,
    [name]: script,
  });

  const refusal = (scripts: Record<string, unknown>): IncompatibleBullMqError => {
    try {
      checkBullCommands(scripts, '6.99.0');
    } catch (error) {
      return error as IncompatibleBullMqError;
    }
    throw new Error('The scripts were taken');
  };

  it('stop start-up with an error naming the version and the command when a command is missing', () => {
    const error = refusal(scriptsWith('addLog', undefined));
    expect(error).toBeInstanceOf(IncompatibleBullMqError);
    expect(error.code).toBe('INCOMPATIBLE_BULLMQ');
    expect(error).toMatchObject({ bullmqVersion: '6.99.0', command: 'addLog' });
    expect(error.message).toMatch(/^bullmq 6\.99\.0: its "addLog" command is missing/);
  });

  it('... when a command takes another number of keys', () => {
    const updateProgress = real.commands.updateProgress;
    const error = refusal(scriptsWith('updateProgress', { ...updateProgress, keys: 4 }));
    expect(error).toMatchObject({ command: 'updateProgress' });
    expect(error.message).toMatch(/"updateProgress" command takes 4 keys, not 3/);
  });

  it('... when its Lua reads other keys or arguments than the shape says', () => {
    const addLog = real.commands.addLog;
    const moreArgs = { ...addLog, content: addLog.content.replace('ARGV[3]', 'ARGV[4]') };
    expect(refusal(scriptsWith('addLog', moreArgs)).message).toMatch(
      /reads KEYS\[1\.\.2\] and ARGV\[1\.\.4\], not KEYS\[1\.\.2\] and ARGV\[1\.\.3\]/,
    );
    const updateProgress = real.commands.updateProgress;
    const moreKeys = { ...updateProgress, content: `${updateProgress.content}\nredis.call('DEL', KEYS[4])\n` };
    expect(refusal(scriptsWith('updateProgress', moreKeys)).message).toMatch(/reads KEYS\[1\.\.4\]/);
  });

  it('... when its Lua reads KEYS or ARGV as a whole (the module passes its own after them)', () => {
    const addLog = real.commands.addLog;
    const counted = { ...addLog, content: `${addLog.content}\nlocal n = #ARGV\n` };
    expect(refusal(scriptsWith('addLog', counted)).message).toMatch(/"addLog" command reads KEYS or ARGV as a whole/);
    const updateProgress = real.commands.updateProgress;
    const passed = { ...updateProgress, content: `${updateProgress.content}\nlocal all = {unpack(KEYS)}\n` };
    expect(refusal(scriptsWith('updateProgress', passed)).message).toMatch(/reads KEYS or ARGV as a whole/);
    // Named in a comment only, it is read by nothing.
    const commented = { ...real.commands, addLog: { ...addLog, content: `${addLog.content}\n-- ARGV, #KEYS\n` } };
    expect(checkBullCommands(commented, '6.99.0').commands.addLog.content).toMatch(/#KEYS/);
  });

  it('... when a command is not a plain script (a flags line cannot be wrapped in a function)', () => {
    const addLog = real.commands.addLog;
    const error = refusal(scriptsWith('addLog', { ...addLog, content: `#!lua flags=no-writes\n${addLog.content}` }));
    expect(error.message).toMatch(/"addLog" command does not start with its header comment/);
  });

  it('... when its name in the scripts is another', () => {
    expect(refusal(scriptsWith('updateProgress', { ...real.commands.addLog })).message).toMatch(
      /"updateProgress" command is named "addLog"/,
    );
  });
});
