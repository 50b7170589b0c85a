import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { JobQueueUnavailableError, type JobEvent, type JobQueue } from 'nestjs-job-streams';
import { JobEnqueue, PROVISIONAL_META_TTL_MS } from '../src/backends/bullmq/job-enqueue.js';
import { JobScripts } from '../src/backends/bullmq/job-scripts.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import { MISSING_METADATA } from '../src/backends/bullmq/worker-runtime.js';
import { createContractApp, type ContractApp } from './contract/job-queue.contract.js';
import { JOBS, createGate, openAllGates, runLog, uniqueKey } from './contract/test-handlers.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisServer } from '../../../test/support/redis-server.js';

const QUEUE = 'jobs';
const RETENTION_MS = 60_000;

/**
 * Enqueue on the `bullmq` backend is all or nothing, although the job's metadata and BullMQ's job
 * are two writes (in different slots on Redis Cluster): whatever stops an enqueue halfway leaves
 * nothing that lasts and nothing a worker runs. Real Redis and BullMQ; an interruption is made
 * real (a refused command, a user without DEL) or played by running only the steps before it.
 */
describe('bullmq backend only: enqueue is all or nothing', () => {
  let server: RedisServer;
  let admin: Redis;
  const apps: ContractApp[] = [];
  const queues: Queue[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
  });

  afterEach(async () => {
    openAllGates();
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await Promise.all(queues.splice(0).map((queue) => queue.close()));
  });

  afterAll(async () => {
    admin?.disconnect();
    await server?.destroy();
  });

  /** A fresh key prefix, with what a test needs on it: key names, the backend's scripts and enqueue steps, a plain BullMQ queue. */
  function fixture(provisionalTtlMs?: number) {
    const prefix = `a${randomUUID().slice(0, 8)}`;
    const keys = new RedisKeys(prefix);
    const scripts = new JobScripts(admin);
    const bull = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: server.port }, prefix });
    queues.push(bull);
    return { prefix, keys, scripts, enqueue: new JobEnqueue(scripts, provisionalTtlMs), bull };
  }

  /** The metadata `JobQueue.enqueue` stores for a job `name` of alice. */
  const metaOf = (name: string) => ({ owner: 'alice', name, state: 'queued', attempt: 0, maxAttempts: 1, createdAt: Date.now(), count: 0 });

  async function app(prefix: string, extra: { worker?: boolean; url?: string } = {}): Promise<JobQueue> {
    const started = await createContractApp({
      backend: 'bullmq',
      worker: extra.worker ?? true,
      redis: { url: extra.url ?? server.url, prefix },
      retentionMs: RETENTION_MS,
      shutdownGraceMs: 200,
    });
    apps.push(started);
    return started.queue;
  }

  async function eventsOf(queue: JobQueue, id: string): Promise<JobEvent[]> {
    const events: JobEvent[] = [];
    for await (const event of queue.follow(id, { owner: 'alice' })) events.push(event);
    return events;
  }

  it('a BullMQ add that fails while the clean-up cannot run either leaves metadata that expires within the provisional TTL, and no job', async () => {
    const { prefix, keys } = fixture();
    // The producer's user may not delete: the enqueue's clean-up after the failed add fails too.
    await admin.call('ACL', 'SETUSER', 'nodelete', 'on', '>secret', '~*', '&*', '+@all', '-del', '-unlink');
    const producer = await app(prefix, { worker: false, url: `redis://nodelete:secret@127.0.0.1:${server.port}` });
    // BullMQ's add reads the queue's `meta` hash: as a string it makes the add fail (WRONGTYPE).
    await admin.set(`${prefix}:${QUEUE}:meta`, 'not a hash');
    const key = uniqueKey('failed-add');

    const refusal = await producer.enqueue(JOBS.record, { key, label: 'never' }, { owner: 'alice' }).catch((error: unknown) => error);

    expect(refusal).toBeInstanceOf(JobQueueUnavailableError);
    const left = await admin.keys(`${prefix}:${QUEUE}:*:jq-meta`);
    expect(left).toHaveLength(1);
    const ttl = await admin.pttl(left[0]);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(PROVISIONAL_META_TTL_MS);
    const id = new RegExp(`:${QUEUE}:(.+):jq-meta$`).exec(left[0])![1];
    expect(await admin.hget(keys.meta(QUEUE, id), 'state')).toBe('queued');
    expect(await admin.exists(keys.bullJob(QUEUE, id))).toBe(0);

    // A worker on the repaired queue runs the jobs enqueued since, never the half-made one.
    await admin.del(`${prefix}:${QUEUE}:meta`);
    const worker = await app(prefix);
    const next = await worker.enqueue(JOBS.record, { key, label: 'next' }, { owner: 'alice' });
    expect((await eventsOf(worker, next.id)).at(-1)?.type).toBe('completed');
    expect(runLog(key)).toEqual(['next']);
  });

  it('a confirmation that fails takes the job back: no metadata, no BullMQ job', async () => {
    const { prefix, bull } = fixture();
    // The producer's user may not run PERSIST: the confirmation fails after BullMQ's add went through.
    await admin.call('ACL', 'SETUSER', 'nopersist', 'on', '>secret', '~*', '&*', '+@all', '-persist');
    const producer = await app(prefix, { worker: false, url: `redis://nopersist:secret@127.0.0.1:${server.port}` });

    const refusal = await producer
      .enqueue(JOBS.record, { key: uniqueKey('unconfirmed'), label: 'never' }, { owner: 'alice' })
      .catch((error: unknown) => error);

    expect(refusal).toBeInstanceOf(JobQueueUnavailableError);
    expect(await admin.keys(`${prefix}:${QUEUE}:*:jq-meta`)).toEqual([]);
    expect(await bull.getJobs(['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'])).toEqual([]);
  });

  it('an enqueue stopped after its metadata (the process died) leaves only metadata that expires within the provisional TTL', async () => {
    const { keys, enqueue, bull } = fixture();
    const id = randomUUID();

    await enqueue.create(keys.meta(QUEUE, id), metaOf(JOBS.record));

    const ttl = await admin.pttl(keys.meta(QUEUE, id));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(PROVISIONAL_META_TTL_MS);
    expect(await bull.getJob(id)).toBeUndefined();
  });

  it('a confirmed job waits past the provisional TTL and runs; a job whose enqueue was never confirmed fails in BullMQ, its handler never runs', async () => {
    const { prefix, keys, enqueue, bull } = fixture(200);
    const key = uniqueKey('unconfirmed');
    const [confirmed, unconfirmed] = [randomUUID(), randomUUID()];

    await enqueue.run(keys.meta(QUEUE, confirmed), metaOf(JOBS.record), {
      add: () => bull.add(JOBS.record, { key, label: 'confirmed' }, { jobId: confirmed }),
      remove: () => bull.remove(confirmed),
    });
    // The process dies between BullMQ's add and the confirmation: the first two steps only.
    await enqueue.create(keys.meta(QUEUE, unconfirmed), metaOf(JOBS.record));
    await bull.add(JOBS.record, { key, label: 'unconfirmed' }, { jobId: unconfirmed });

    expect(await admin.pttl(keys.meta(QUEUE, confirmed))).toBe(-1);
    // Both waited in the queue longer than the provisional TTL once the unconfirmed one's ran out.
    expect(
      await pollUntil(
        () => admin.exists(keys.meta(QUEUE, unconfirmed)),
        (exists) => exists === 0,
        5000,
        20,
      ),
    ).toBe(0);
    expect(await admin.exists(keys.meta(QUEUE, confirmed))).toBe(1);

    const worker = await app(prefix);
    expect((await eventsOf(worker, confirmed)).map((event) => event.type)).toEqual(['started', 'completed']);
    const state = await pollUntil(
      () => bull.getJobState(unconfirmed),
      (value) => value === 'failed' || value === 'completed',
    );
    expect(state).toBe('failed');
    expect((await bull.getJob(unconfirmed))?.failedReason).toBe(MISSING_METADATA);
    expect(runLog(key)).toEqual(['confirmed']);
    // Failing it gave it no metadata: it is unknown, as a job that was never enqueued.
    expect(await admin.exists(keys.meta(QUEUE, unconfirmed), keys.events(QUEUE, unconfirmed))).toBe(0);
  });

  it('a confirmed enqueue leaves metadata without TTL while the job waits, and the retention TTL once it ended', async () => {
    const { prefix, keys } = fixture();
    const producer = await app(prefix, { worker: false });
    const job = await producer.enqueue(JOBS.record, { key: uniqueKey('retention'), label: 'kept' }, { owner: 'alice' });

    expect(await admin.pttl(keys.meta(QUEUE, job.id))).toBe(-1);
    expect((await producer.getJob(job.id, { owner: 'alice' })).state).toBe('queued');

    const worker = await app(prefix);
    expect((await eventsOf(worker, job.id)).map((event) => event.type)).toEqual(['started', 'completed']);
    for (const ttl of [await admin.pttl(keys.meta(QUEUE, job.id)), await admin.pttl(keys.events(QUEUE, job.id))]) {
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(RETENTION_MS);
    }
  });

  it('a worker that starts a job before its enqueue is confirmed makes its metadata last', async () => {
    const { prefix, keys, enqueue, bull } = fixture();
    const worker = await app(prefix);
    const gate = createGate();
    const id = randomUUID();

    await enqueue.create(keys.meta(QUEUE, id), metaOf(JOBS.gated));
    await bull.add(JOBS.gated, { gate: gate.key }, { jobId: id });
    await gate.entered;

    expect(await admin.pttl(keys.meta(QUEUE, id))).toBe(-1);
    gate.open();
    expect((await eventsOf(worker, id)).at(-1)?.type).toBe('completed');
  });

  it('a job that ends before its enqueue is confirmed keeps its retention TTL', async () => {
    const { prefix, keys, enqueue, bull } = fixture();
    const worker = await app(prefix);
    const id = randomUUID();
    let events: JobEvent[] = [];

    await enqueue.run(keys.meta(QUEUE, id), metaOf(JOBS.record), {
      // BullMQ's reply arrives only after a worker ran the job to its end.
      add: async () => {
        await bull.add(JOBS.record, { key: uniqueKey('fast'), label: 'fast' }, { jobId: id });
        events = await eventsOf(worker, id);
      },
      remove: () => bull.remove(id),
    });

    expect(events.map((event) => event.type)).toEqual(['started', 'completed']);
    const ttl = await admin.pttl(keys.meta(QUEUE, id));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(RETENTION_MS);
  });

  it('an add that returns after the provisional TTL ran out fails the enqueue and leaves no job', async () => {
    const { keys, enqueue, bull } = fixture();
    const id = randomUUID();
    const meta = keys.meta(QUEUE, id);

    const refusal = await enqueue
      .run(meta, metaOf(JOBS.record), {
        add: async () => {
          await bull.add(JOBS.record, { key: uniqueKey('slow'), label: 'slow' }, { jobId: id });
          // The TTL runs out while BullMQ's reply is on its way.
          await admin.pexpire(meta, 1);
          await pollUntil(
            () => admin.exists(meta),
            (exists) => exists === 0,
            5000,
            5,
          );
        },
        remove: () => bull.remove(id),
      })
      .catch((error: unknown) => error);

    expect(refusal).toBeInstanceOf(JobQueueUnavailableError);
    expect((refusal as Error).message).toMatch(/provisional TTL of \d+ ms ran out/);
    expect(await bull.getJob(id)).toBeUndefined();
    expect(await admin.exists(meta)).toBe(0);
  });

  it("the clean-up of a failed enqueue takes back metadata of a job nobody started, never a started job's", async () => {
    const { keys, scripts, enqueue } = fixture();
    const [queuedId, startedId] = [randomUUID(), randomUUID()];
    const [queued, started] = [keys.meta(QUEUE, queuedId), keys.meta(QUEUE, startedId)];
    await enqueue.create(queued, metaOf(JOBS.record));
    await enqueue.create(started, metaOf(JOBS.record));
    expect((await scripts.startAttempt(started, keys.events(QUEUE, startedId), Date.now(), 100, randomUUID())).status).toBe('ok');

    expect(await scripts.withdrawJob(queued)).toBe('withdrawn');
    expect(await scripts.withdrawJob(started)).toBe('started');
    expect(await scripts.withdrawJob(queued)).toBe('gone');
    expect(await admin.exists(queued)).toBe(0);
    expect(await admin.pttl(started)).toBe(-1);
  });

  it("a foreign worker's start makes provisional metadata last", async () => {
    const { keys, scripts, enqueue } = fixture();
    const id = randomUUID();
    await enqueue.create(keys.meta(QUEUE, id), metaOf(JOBS.record));

    const limits = { now: Date.now(), retentionMs: RETENTION_MS, maxEvents: 100 };
    expect(
      await scripts.bridgeEntry(keys.meta(QUEUE, id), keys.events(QUEUE, id), '1000-0', { kind: 'start', activeMs: 1000 }, limits),
    ).toBe('ok');

    expect(await admin.pttl(keys.meta(QUEUE, id))).toBe(-1);
  });
});
