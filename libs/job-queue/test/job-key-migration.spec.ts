import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Queue } from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import { JobNotFoundError, migrateJobKeys, type JobEvent, type JobInfo, type JobQueueModuleOptions } from 'nestjs-job-streams';
import { legacyMetaPattern } from '../src/backends/bullmq/job-key-migration.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import { MISSING_METADATA } from '../src/worker/worker-runtime.js';
import { createContractApp, type ContractApp } from './contract/job-queue.contract.js';
import { HANDLER_KIND, PROCESSOR_KIND, type JobKind } from './contract/job-kinds.js';
import { ContractTestHandlers, JOBS, runLog, uniqueKey } from './contract/test-handlers.js';
import { PROCESSOR_QUEUES } from './contract/test-processors.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisCluster } from '../../../test/support/redis-cluster.js';
import { RedisServer } from '../../../test/support/redis-server.js';

/**
 * Upgrading from the key layout before job keys moved next to BullMQ's: `migrateJobKeys` moves
 * what the previous version wrote, on one server and on Redis Cluster, and the new version then
 * serves and runs those jobs as its own.
 *
 * "What the previous version wrote" is made here by running jobs on this version and putting
 * their keys under the previous version's names ({@link previousVersionKeys}, a frozen copy of its
 * key function): the move changed the names only, not a script nor what a key holds.
 */

const QUEUE = 'jobs';
const PROCESSOR_QUEUE = PROCESSOR_QUEUES[10];
const RETENTION_MS = 120_000;
const OWNER = 'alice';

/** The previous version's names of a job's metadata hash and events stream (its `RedisKeys`, frozen). */
function previousVersionKeys(prefix: string, queue: string, jobId: string): { meta: string; events: string } {
  const own = prefix.replace(/[%{}]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
  const text = `${queue}:${jobId}`;
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  const base = `${own}:{${own}:${(hash >>> 0) % 16}}:${queue}:${jobId}`;
  return { meta: `${base}:meta`, events: `${base}:events` };
}

/** Copies `from` to `to` with its remaining TTL (DUMP/RESTORE: one key per command, so across slots too); false when `from` is absent. */
async function copyKey(client: Redis | Cluster, from: string, to: string): Promise<boolean> {
  const [value, pttl]: [Buffer | null, number] = await Promise.all([client.dumpBuffer(from), client.pttl(from)]);
  if (value === null) return false;
  await client.restore(to, pttl < 0 ? 0 : Math.max(pttl, 1), value, 'REPLACE');
  return true;
}

/** Puts a job's keys under the previous version's names, as that version left them. */
async function toPreviousLayout(client: Redis | Cluster, prefix: string, queue: string, jobId: string): Promise<void> {
  const keys = new RedisKeys(prefix);
  const old = previousVersionKeys(prefix, queue, jobId);
  for (const [from, to] of [
    [keys.events(queue, jobId), old.events],
    [keys.meta(queue, jobId), old.meta],
  ]) {
    if (await copyKey(client, from, to)) await client.del(from);
  }
}

/** `@JobHandler` jobs (default queue) and `@Processor` jobs (the contract processors' queues) in one application. */
const BOTH_KINDS: JobKind = {
  ...PROCESSOR_KIND,
  appModule: (options) => {
    const base = PROCESSOR_KIND.appModule(options);
    return { ...base, providers: [...(base.providers ?? []), ContractTestHandlers] };
  },
};

async function eventsOf(app: ContractApp, id: string, queue?: string): Promise<JobEvent[]> {
  const events: JobEvent[] = [];
  for await (const event of app.queue.follow(id, { owner: OWNER, queue })) events.push(event);
  return events;
}

const typesOf = (events: JobEvent[]) => events.map((event) => event.type);

/** Every key of `node` that `pattern` matches (a whole SCAN). */
async function scanAll(node: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return [...new Set(found)].sort();
}

describe('migrateJobKeys on one Redis server', () => {
  let server: RedisServer;
  let admin: Redis;
  const apps: ContractApp[] = [];
  const queues: Queue[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
  });

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await Promise.all(queues.splice(0).map((queue) => queue.close()));
  });

  afterAll(async () => {
    admin?.disconnect();
    await server?.destroy();
  });

  async function app(prefix: string, extra: Partial<JobQueueModuleOptions> = {}, kind: JobKind = HANDLER_KIND): Promise<ContractApp> {
    const started = await createContractApp(
      { backend: 'bullmq', redis: { url: server.url, prefix }, retentionMs: RETENTION_MS, shutdownGraceMs: 200, ...extra },
      kind,
    );
    apps.push(started);
    return started;
  }

  async function close(app: ContractApp): Promise<void> {
    apps.splice(apps.indexOf(app), 1);
    await app.close();
  }

  const freshPrefix = () => `m${randomUUID().slice(0, 8)}`;

  it('an ended job the previous version kept is read through JobQueue after the move: same info, same event ids, its retention TTL kept', async () => {
    const prefix = freshPrefix();
    const keys = new RedisKeys(prefix);
    const before = await app(prefix, {}, BOTH_KINDS);
    const processed = await before.queue.enqueue(JOBS.steps, { steps: 2, tokensPerStep: 1 }, { queue: PROCESSOR_QUEUE, owner: OWNER });
    const handled = await before.queue.enqueue(JOBS.fail, { message: 'boom' }, { owner: OWNER });
    const jobs: Array<{ id: string; queue: string; events: JobEvent[]; info?: JobInfo }> = [
      { id: processed.id, queue: PROCESSOR_QUEUE, events: await eventsOf(before, processed.id, PROCESSOR_QUEUE) },
      { id: handled.id, queue: QUEUE, events: await eventsOf(before, handled.id) },
    ];
    expect(typesOf(jobs[0].events)).toEqual(['started', 'progress', 'log', 'progress', 'log', 'completed']);
    expect(typesOf(jobs[1].events)).toEqual(['started', 'before', 'failed']);
    for (const job of jobs) job.info = await before.queue.getJob(job.id, { owner: OWNER, queue: job.queue });
    await close(before);
    for (const job of jobs) await toPreviousLayout(admin, prefix, job.queue, job.id);

    // The new version does not see the previous version's keys: the jobs are unknown.
    const reader = await app(prefix, { worker: false }, BOTH_KINDS);
    for (const job of jobs) {
      await expect(reader.queue.getJob(job.id, { owner: OWNER, queue: job.queue })).rejects.toBeInstanceOf(JobNotFoundError);
    }

    const ttlsBefore = await Promise.all(
      jobs.flatMap((job) => Object.values(previousVersionKeys(prefix, job.queue, job.id)).map((key) => admin.pttl(key))),
    );
    expect(await migrateJobKeys(admin, { prefix })).toEqual({ jobs: 2, skipped: 0 });
    const ttlsAfter = await Promise.all(
      jobs.flatMap((job) => [keys.meta(job.queue, job.id), keys.events(job.queue, job.id)].map((key) => admin.pttl(key))),
    );
    ttlsAfter.forEach((ttl, index) => {
      expect(ttlsBefore[index]).toBeGreaterThan(RETENTION_MS - 30_000);
      expect(ttl).toBeLessThanOrEqual(ttlsBefore[index]);
      expect(ttl).toBeGreaterThan(ttlsBefore[index] - 5_000);
    });
    for (const job of jobs) {
      const old = previousVersionKeys(prefix, job.queue, job.id);
      expect(await admin.exists(old.meta, old.events)).toBe(0);
    }

    for (const job of jobs) {
      expect(await reader.queue.getJob(job.id, { owner: OWNER, queue: job.queue })).toEqual(job.info);
      expect(await eventsOf(reader, job.id, job.queue)).toEqual(job.events);
      // Resumable from any event id the previous version handed out.
      for (let index = 0; index < job.events.length; index++) {
        const page = await reader.queue.readEvents(job.id, { owner: OWNER, queue: job.queue, after: job.events[index].id });
        expect(page.events).toEqual(job.events.slice(index + 1));
        expect(page.done).toBe(true);
      }
    }
  });

  it('@JobHandler jobs the previous version enqueued run on a worker of the new version after the move; without it they fail unrun', async () => {
    const prefix = freshPrefix();
    const unmigrated = freshPrefix();
    const key = uniqueKey('migrated');
    const bull = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: server.port }, prefix });
    const unmigratedBull = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: server.port }, prefix: unmigrated });
    queues.push(bull, unmigratedBull);

    // A job whose first attempt failed and waits for its retry: its stream has that attempt's events.
    const worker = await app(prefix);
    const retried = await worker.queue.enqueue(JOBS.failFirst, {}, { owner: OWNER, attempts: 2, backoffMs: 600_000 });
    expect(
      await pollUntil(
        () => bull.getJobState(retried.id),
        (state) => state === 'delayed',
      ),
    ).toBe('delayed');
    const firstAttempt = (await worker.queue.readEvents(retried.id, { owner: OWNER })).events;
    expect(firstAttempt.map((event) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ['try', { attempt: 1 }],
    ]);
    await close(worker);
    // A job nobody took yet: metadata only, and BullMQ's job waiting; the same in a deployment that skips the move.
    const producer = await app(prefix, { worker: false });
    const waiting = await producer.queue.enqueue(JOBS.record, { key, label: 'migrated' }, { owner: OWNER });
    const otherProducer = await app(unmigrated, { worker: false });
    const stranded = await otherProducer.queue.enqueue(JOBS.record, { key, label: 'not migrated' }, { owner: OWNER });
    await Promise.all([close(producer), close(otherProducer)]);
    expect(await bull.getJobState(waiting.id)).toBe('waiting');
    for (const id of [retried.id, waiting.id]) await toPreviousLayout(admin, prefix, QUEUE, id);
    await toPreviousLayout(admin, unmigrated, QUEUE, stranded.id);
    expect(await admin.exists(previousVersionKeys(prefix, QUEUE, waiting.id).events)).toBe(0);

    expect(await migrateJobKeys(admin, { prefix })).toEqual({ jobs: 2, skipped: 0 });
    await (await bull.getJob(retried.id))!.promote(); // its backoff is long: run the retry now

    const upgraded = await app(prefix);
    const retriedEvents = await eventsOf(upgraded, retried.id);
    expect(retriedEvents.slice(0, 2)).toEqual(firstAttempt);
    expect(retriedEvents.map((event) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ['try', { attempt: 1 }],
      ['started', { attempt: 2 }],
      ['try', { attempt: 2 }],
      ['completed', { result: { attempt: 2 } }],
    ]);
    expect((await eventsOf(upgraded, waiting.id)).map((event) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ['completed', { result: { label: 'migrated' } }],
    ]);
    expect(await upgraded.queue.getJob(retried.id, { owner: OWNER })).toMatchObject({ state: 'completed', attempt: 2 });

    // Without the move the new version's worker finds no metadata and fails the job in BullMQ, unrun.
    await app(unmigrated);
    expect(
      await pollUntil(
        () => unmigratedBull.getJobState(stranded.id),
        (state) => state === 'failed',
      ),
    ).toBe('failed');
    expect((await unmigratedBull.getJob(stranded.id))?.failedReason).toBe(MISSING_METADATA);
    expect(runLog(key)).toEqual(['migrated']);
  });

  it('is idempotent, finishes an interrupted run, and never overwrites a job the new version wrote', async () => {
    const prefix = freshPrefix();
    const keys = new RedisKeys(prefix);
    const before = await app(prefix);
    const ids: string[] = [];
    const events = new Map<string, JobEvent[]>();
    for (let index = 0; index < 4; index++) {
      const job = await before.queue.enqueue(JOBS.emit, { count: index + 1 }, { owner: OWNER });
      ids.push(job.id);
      events.set(job.id, await eventsOf(before, job.id));
    }
    await close(before);
    const [plain, copiedStream, copiedBoth, clash] = ids;
    for (const id of ids) await toPreviousLayout(admin, prefix, QUEUE, id);
    const old = (id: string) => previousVersionKeys(prefix, QUEUE, id);
    // A run stopped after copying a stream; another after copying both keys, before deleting the old ones.
    await copyKey(admin, old(copiedStream).events, keys.events(QUEUE, copiedStream));
    await copyKey(admin, old(copiedBoth).events, keys.events(QUEUE, copiedBoth));
    await copyKey(admin, old(copiedBoth).meta, keys.meta(QUEUE, copiedBoth));
    // The new version has its own job under `clash`'s queue and id (here: with another job's keys).
    await copyKey(admin, old(plain).events, keys.events(QUEUE, clash));
    await copyKey(admin, old(plain).meta, keys.meta(QUEUE, clash));
    await admin.hset(keys.meta(QUEUE, clash), 'createdAt', '1');
    const clashKeys = {
      meta: await admin.hgetall(keys.meta(QUEUE, clash)),
      events: await admin.xrange(keys.events(QUEUE, clash), '-', '+'),
    };
    // Keys the pattern matches that are no job of the previous version: another shard, one more part.
    const strays = [old(plain).meta.replace(/:\d+\}:/, ':99}:'), old(plain).meta.replace(/:meta$/, ':x:meta')];
    for (const stray of strays) await admin.hset(stray, 'state', 'queued');

    expect(await migrateJobKeys(admin, { prefix, batch: 2 })).toEqual({ jobs: 3, skipped: 1 });

    expect(await admin.hgetall(keys.meta(QUEUE, clash))).toEqual(clashKeys.meta);
    expect(await admin.xrange(keys.events(QUEUE, clash), '-', '+')).toEqual(clashKeys.events);
    for (const id of ids) expect(await admin.exists(old(id).meta, old(id).events)).toBe(0);
    for (const stray of strays) expect(await admin.hgetall(stray)).toEqual({ state: 'queued' });
    expect(await scanAll(admin, legacyMetaPattern(prefix))).toEqual([...strays].sort());
    const reader = await app(prefix, { worker: false });
    for (const id of [plain, copiedStream, copiedBoth]) expect(await eventsOf(reader, id)).toEqual(events.get(id));
    await close(reader);

    // Every key of these jobs, old and new, as DUMP gives it.
    const snapshot = () => {
      const names = [...strays, ...ids.flatMap((id) => [keys.meta(QUEUE, id), keys.events(QUEUE, id), old(id).meta, old(id).events])];
      return Promise.all(names.map(async (name) => [name, (await admin.dumpBuffer(name))?.toString('hex') ?? null]));
    };
    const settled = await snapshot();
    expect(await migrateJobKeys(admin, { prefix })).toEqual({ jobs: 0, skipped: 0 });
    expect(await snapshot()).toEqual(settled);
  });

  it('takes the prefix literally in its SCAN pattern: glob characters match only themselves', async () => {
    const prefix = 'g*?[a]\\';
    const neighbour = 'gXYa'; // what the pattern would match with the prefix's characters left unescaped
    const id = randomUUID();
    const mine = previousVersionKeys(prefix, QUEUE, id);
    const theirs = previousVersionKeys(neighbour, QUEUE, id);
    for (const { meta, events } of [mine, theirs]) {
      await admin.hset(meta, 'state', 'completed');
      await admin.xadd(events, '1-1', 'type', 'completed', 'data', '{}');
    }

    expect(await scanAll(admin, legacyMetaPattern(prefix))).toEqual([mine.meta]);
    expect(await migrateJobKeys(admin, { prefix })).toEqual({ jobs: 1, skipped: 0 });
    const keys = new RedisKeys(prefix);
    expect(await admin.exists(keys.meta(QUEUE, id), keys.events(QUEUE, id))).toBe(2);
    expect(await admin.exists(theirs.meta, theirs.events)).toBe(2);
  });

  it('refuses options it cannot use, naming the option', async () => {
    await expect(migrateJobKeys(admin, { prefix: '' })).rejects.toThrow(/prefix/);
    await expect(migrateJobKeys(admin, { prefix: 'jq', batch: 0 })).rejects.toThrow(/batch must be an integer from 1 to 10000/);
  });
});

describe('migrateJobKeys on Redis Cluster', () => {
  let cluster: RedisCluster;
  let admin: Cluster;
  const apps: ContractApp[] = [];

  beforeAll(async () => {
    cluster = await RedisCluster.start();
    admin = new Cluster(cluster.urls.slice(0, 2).map((url) => ({ host: '127.0.0.1', port: Number(new URL(url).port) })));
  }, 60_000);

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  afterAll(async () => {
    admin?.disconnect();
    await cluster?.destroy();
  });

  async function app(prefix: string, extra: Partial<JobQueueModuleOptions> = {}): Promise<ContractApp> {
    const started = await createContractApp({
      backend: 'bullmq',
      redis: { clusterNodes: cluster.urls.slice(0, 2), prefix },
      retentionMs: RETENTION_MS,
      shutdownGraceMs: 200,
      ...extra,
    });
    apps.push(started);
    return started;
  }

  it('moves the jobs whose keys lie on every master; the new version reads and runs them', async () => {
    const prefix = `{m${randomUUID().slice(0, 8)}}`;
    const key = uniqueKey('cluster');
    const before = await app(prefix);
    const ended = new Map<string, JobEvent[]>();
    const mastersOf = async (ids: Iterable<string>) =>
      new Set(await Promise.all([...ids].map(async (id) => (await cluster.masterOf(previousVersionKeys(prefix, QUEUE, id).meta)).port)));
    // Enough jobs that the previous version's keys of them lie on all three masters.
    while (ended.size < 40 && (ended.size < 6 || (await mastersOf(ended.keys())).size < 3)) {
      const job = await before.queue.enqueue(JOBS.emit, { count: 2 }, { owner: OWNER });
      ended.set(job.id, await eventsOf(before, job.id));
    }
    expect((await mastersOf(ended.keys())).size).toBe(3);
    await Promise.all(apps.splice(0).map((started) => started.close()));
    const producer = await app(prefix, { worker: false });
    const waiting = await producer.queue.enqueue(JOBS.record, { key, label: 'on the cluster' }, { owner: OWNER });
    await Promise.all(apps.splice(0).map((started) => started.close()));
    for (const id of [...ended.keys(), waiting.id]) await toPreviousLayout(admin, prefix, QUEUE, id);

    expect(await migrateJobKeys(admin, { prefix, batch: 3 })).toEqual({ jobs: ended.size + 1, skipped: 0 });

    for (const master of admin.nodes('master')) {
      expect(await scanAll(master, legacyMetaPattern(prefix))).toEqual([]);
    }
    const upgraded = await app(prefix);
    for (const [id, events] of ended) expect(await eventsOf(upgraded, id)).toEqual(events);
    expect(typesOf(await eventsOf(upgraded, waiting.id))).toEqual(['started', 'completed']);
    expect(runLog(key)).toEqual(['on the cluster']);
    expect(await migrateJobKeys(admin, { prefix })).toEqual({ jobs: 0, skipped: 0 });
  });
});
