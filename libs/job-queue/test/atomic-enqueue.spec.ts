import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { JobQueueUnavailableError, jobStreamsBackend, type JobEvent, type JobQueue } from 'nestjs-job-streams';
import { JobScripts } from '../src/backends/bullmq/job-scripts.js';
import { JobStreamsBackend } from '../src/backends/bullmq/job-streams-backend.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import { MISSING_METADATA } from '../src/worker/worker-runtime.js';
import { createContractApp, type ContractApp } from './contract/job-queue.contract.js';
import { JOBS, createGate, openAllGates, runLog, uniqueKey } from './contract/test-handlers.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisMonitor } from '../../../test/support/redis-monitor.js';
import { RedisServer } from '../../../test/support/redis-server.js';

const QUEUE = 'jobs';
const RETENTION_MS = 60_000;

/**
 * Enqueue on the `bullmq` backend is one script: BullMQ's own add and the job's metadata, which lie
 * in one hash slot. Whatever stops an enqueue leaves either the whole job or nothing, and a worker
 * never sees a job without its metadata. Real Redis and BullMQ; an interruption is made real (a
 * refused command, a user without DEL, replicas that never confirm).
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

  /** A fresh key prefix, with what a test needs on it: key names, the backend's scripts, a plain BullMQ queue. */
  function fixture() {
    const prefix = `a${randomUUID().slice(0, 8)}`;
    const keys = new RedisKeys(prefix);
    const scripts = new JobScripts(admin);
    const bull = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: server.port }, prefix });
    queues.push(bull);
    return { prefix, keys, scripts, bull };
  }

  /** The metadata `JobQueue.enqueue` stores for a job `name` of alice. */
  const metaOf = (name: string) => ({ owner: 'alice', name, state: 'queued', attempt: 0, maxAttempts: 1, createdAt: Date.now() });

  async function app(
    prefix: string,
    extra: { worker?: boolean; url?: string; replicaAcks?: number; replicaAckTimeoutMs?: number } = {},
  ): Promise<JobQueue> {
    const { worker = true, url = server.url, ...acks } = extra;
    const started = await createContractApp({
      backend: 'bullmq',
      worker,
      redis: { url, prefix, ...acks },
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

  it("one script: a client sends a single command that writes both BullMQ's job and its metadata", async () => {
    const { prefix, keys } = fixture();
    const producer = await app(prefix, { worker: false });
    const monitor = await RedisMonitor.start(server.url);
    try {
      const job = await producer.enqueue(JOBS.record, { key: uniqueKey('one-script'), label: 'once' }, { owner: 'alice' });
      await monitor.caughtUp(admin);
      const meta = keys.meta(QUEUE, job.id);
      const sent = monitor.commands.filter((command) => command.source !== 'lua' && command.args.includes(meta));
      expect(sent).toHaveLength(1);
      expect(sent[0].name).toMatch(/^EVAL(SHA)?$/);
      // The same command carries BullMQ's keys of the add, and its Lua wrote both.
      expect(sent[0].args).toContain(`${prefix}:${QUEUE}:wait`);
      const byLua = monitor.commands.filter((command) => command.source === 'lua');
      expect(byLua.some((command) => command.name === 'HSET' && command.args[0] === meta)).toBe(true);
      expect(byLua.some((command) => command.name === 'HMSET' && command.args[0] === keys.bullJob(QUEUE, job.id))).toBe(true);
    } finally {
      monitor.stop();
    }
  });

  it('a BullMQ add that fails writes no metadata, even where the enqueue could not clean up; the next enqueue runs', async () => {
    const { prefix } = fixture();
    // The producer's user may not delete: an enqueue that relied on cleaning up after a failed add would leave its metadata.
    await admin.call('ACL', 'SETUSER', 'nodelete', 'on', '>secret', '~*', '&*', '+@all', '-del', '-unlink');
    const producer = await app(prefix, { worker: false, url: `redis://nodelete:secret@127.0.0.1:${server.port}` });
    // BullMQ's add reads the queue's `meta` hash: as a string it makes the add fail (WRONGTYPE).
    await admin.set(`${prefix}:${QUEUE}:meta`, 'not a hash');
    const key = uniqueKey('failed-add');

    const refusal = await producer.enqueue(JOBS.record, { key, label: 'never' }, { owner: 'alice' }).catch((error: unknown) => error);

    expect(refusal).toBeInstanceOf(JobQueueUnavailableError);
    // BullMQ's id counter and the queue's own `meta` aside, nothing under the queue: no job, no metadata.
    const left = await admin.keys(`${prefix}:${QUEUE}:*`);
    expect(left.filter((key) => ![`${prefix}:${QUEUE}:id`, `${prefix}:${QUEUE}:meta`].includes(key))).toEqual([]);

    // A worker on the repaired queue runs the jobs enqueued since.
    await admin.del(`${prefix}:${QUEUE}:meta`);
    const worker = await app(prefix);
    const next = await worker.enqueue(JOBS.record, { key, label: 'next' }, { owner: 'alice' });
    expect((await eventsOf(worker, next.id)).at(-1)?.type).toBe('completed');
    expect(runLog(key)).toEqual(['next']);
  });

  it('an add sent again (as ioredis resends an unanswered command after a reconnect) leaves one job and its first metadata', async () => {
    const { prefix, keys } = fixture();
    const queue = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: server.port }, prefix }, jobStreamsBackend());
    queues.push(queue);
    const id = randomUUID();
    const meta = keys.meta(QUEUE, id);
    const first = { ...metaOf(JOBS.record), owner: 'alice' };

    const ids = [
      await JobStreamsBackend.addingJob(meta, first, () => queue.add(JOBS.record, { label: 'first' }, { jobId: id })),
      await JobStreamsBackend.addingJob(meta, { ...first, owner: 'mallory' }, () =>
        queue.add(JOBS.record, { label: 'again' }, { jobId: id }),
      ),
    ].map((job) => job.id);

    expect(ids).toEqual([id, id]);
    expect(await admin.hget(meta, 'owner')).toBe('alice');
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    expect((await queue.getJob(id))?.data).toEqual({ label: 'first' });
  });

  it('an enqueue its replicas do not confirm is taken back: it rejects, and leaves neither job nor metadata', async () => {
    const { prefix, bull } = fixture();
    // One server, no replica: WAIT 1 never gets its ack.
    const producer = await app(prefix, { worker: false, replicaAcks: 1, replicaAckTimeoutMs: 100 });

    const refusal = await producer
      .enqueue(JOBS.record, { key: uniqueKey('unacked'), label: 'never' }, { owner: 'alice' })
      .catch((error: unknown) => error);

    expect(refusal).toBeInstanceOf(JobQueueUnavailableError);
    expect((refusal as Error).message).toMatch(/replica/);
    expect(await admin.keys(`${prefix}:${QUEUE}:*:jq-meta`)).toEqual([]);
    expect(await bull.getJobs(['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'])).toEqual([]);
  });

  it('a job BullMQ has without metadata (added to the handler queue with plain BullMQ) fails in BullMQ; its handler never runs', async () => {
    const { prefix, keys, bull } = fixture();
    const key = uniqueKey('no-metadata');
    const id = randomUUID();
    await bull.add(JOBS.record, { key, label: 'bare' }, { jobId: id });

    await app(prefix);
    const state = await pollUntil(
      () => bull.getJobState(id),
      (value) => value === 'failed' || value === 'completed',
    );
    expect(state).toBe('failed');
    expect((await bull.getJob(id))?.failedReason).toBe(MISSING_METADATA);
    expect(runLog(key)).toEqual([]);
    // Failing it gave it no metadata: it is unknown, as a job that was never enqueued.
    expect(await admin.exists(keys.meta(QUEUE, id), keys.events(QUEUE, id))).toBe(0);
  });

  it('an enqueued job has metadata without TTL while it waits, and the retention TTL once it ended', async () => {
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

  it("the clean-up of a failed enqueue takes back metadata of a job nobody started, never a started job's", async () => {
    const { keys, scripts } = fixture();
    const [queuedId, startedId] = [randomUUID(), randomUUID()];
    const [queued, started] = [keys.meta(QUEUE, queuedId), keys.meta(QUEUE, startedId)];
    await admin.hset(queued, metaOf(JOBS.record));
    await admin.hset(started, metaOf(JOBS.record));
    expect((await scripts.startAttempt(started, keys.events(QUEUE, startedId), Date.now(), 100, randomUUID())).status).toBe('ok');

    expect(await scripts.withdrawJob(queued)).toBe('withdrawn');
    expect(await scripts.withdrawJob(started)).toBe('started');
    expect(await scripts.withdrawJob(queued)).toBe('gone');
    expect(await admin.exists(queued)).toBe(0);
    expect(await admin.pttl(started)).toBe(-1);
  });

  it("a start makes metadata last that an earlier version's enqueue left with a provisional TTL (a worker's and a foreign worker's)", async () => {
    const { prefix, keys, scripts, bull } = fixture();
    const [foreignId, ownId] = [randomUUID(), randomUUID()];
    for (const id of [foreignId, ownId]) {
      await admin.hset(keys.meta(QUEUE, id), metaOf(JOBS.gated));
      await admin.pexpire(keys.meta(QUEUE, id), 60_000);
    }

    const limits = { now: Date.now(), retentionMs: RETENTION_MS, maxEvents: 100 };
    expect(
      await scripts.bridgeEntry(
        keys.meta(QUEUE, foreignId),
        keys.events(QUEUE, foreignId),
        '1000-0',
        { kind: 'start', activeMs: 1000 },
        limits,
      ),
    ).toBe('ok');
    expect(await admin.pttl(keys.meta(QUEUE, foreignId))).toBe(-1);

    const worker = await app(prefix);
    const gate = createGate();
    await bull.add(JOBS.gated, { gate: gate.key }, { jobId: ownId });
    await gate.entered;
    expect(await admin.pttl(keys.meta(QUEUE, ownId))).toBe(-1);
    gate.open();
    expect((await eventsOf(worker, ownId)).at(-1)?.type).toBe('completed');
  });
});
