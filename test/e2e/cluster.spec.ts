import { randomUUID } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { RedisKeys } from 'nestjs-job-streams';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, expectedBuildEvents, mapLimit, typesAndData, type FollowKind, type WireEvent } from '../support/build-api.js';
import { expectedReport } from '../support/distributed-reports.js';
import type { ClusterNodeView } from '../../bench/support/cluster-nodes.js';
import { RedisCluster } from '../support/redis-cluster.js';

/**
 * The demo as deployed on Redis Cluster: two apis that run no handlers and two workers, all given
 * only `REDIS_CLUSTER_NODES`, on a real cluster of three masters and three replicas. Jobs started
 * on one api are read on the other; their keys are spread over the masters.
 */

const DELIVERIES: readonly FollowKind[] = ['polling', 'ndjson', 'sse'];

describe('Redis Cluster: 2 apis and 2 workers on 3 masters with a replica each (bullmq backend)', () => {
  let cluster: RedisCluster | undefined;
  const processes: AppProcess[] = [];
  let prefix: string;
  let a: BuildApi;
  let b: BuildApi;

  beforeAll(async () => {
    cluster = await RedisCluster.start();
    prefix = `{e2e${randomUUID().slice(0, 8)}}`;
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      // Two nodes are enough: the client finds the others.
      REDIS_CLUSTER_NODES: cluster.urls.slice(0, 2).join(','),
      JOB_QUEUE_PREFIX: prefix,
      WORKER_CONCURRENCY: '8',
      SSE_HEARTBEAT_MS: '1000',
    };
    const apiEnv = { ...env, JOB_QUEUE_WORKER: 'false' };
    const [apiA, apiB] = await AppProcess.startAll(processes, [
      AppProcess.api(apiEnv),
      AppProcess.api(apiEnv),
      AppProcess.worker(env),
      AppProcess.worker(env),
    ]);
    a = new BuildApi(apiA.url, 'api A');
    b = new BuildApi(apiB.url, 'api B');
  }, 90_000);

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await cluster?.destroy();
  }, 30_000);

  it('builds started on one api read identically on the other by polling, NDJSON and SSE; their keys lie on the masters their slots say, spread over them', async () => {
    const STEPS = 15;
    const TOKENS = 2;
    const ids = await mapLimit(
      Array.from({ length: 24 }, (_, i) => i),
      8,
      (i) => (i % 2 ? b : a).start({ steps: STEPS, stepMs: 20, tokensPerStep: TOKENS }),
    );
    // Every build followed on the other api by every delivery at once: 72 followers of 24 jobs.
    const reads = await Promise.all(
      ids.flatMap((id, i) => DELIVERIES.map(async (kind) => ({ id, kind, events: await (i % 2 ? a : b).follow(id, kind).ended }))),
    );
    for (const { id, kind, events } of reads) {
      expect({ id, kind, events: typesAndData(events) }).toEqual({ id, kind, events: expectedBuildEvents(STEPS, TOKENS) });
    }
    for (const id of ids) expect((await a.state(id)).state).toBe('completed');

    // Each job's keys are on the master serving its shard's slot.
    const keys = new RedisKeys(prefix);
    const masters = (await cluster!.describe()).filter((node) => node.role === 'master' && !node.failed);
    expect(masters).toHaveLength(3);
    const jobsPerMaster = await Promise.all(
      masters.map(async (master) => {
        const client = new Redis(master.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
        try {
          await client.connect();
          const metas = await client.keys(`${keys.own}:*:meta`);
          return metas.filter((key) => ids.some((id) => key === keys.meta('jobs', id))).length;
        } finally {
          client.disconnect();
        }
      }),
    );
    // Where each job's slot says, exactly; and spread (placement is random: 24 jobs leave one of
    // the 3 masters without a job about 3 times in 1,000 runs, two of them practically never).
    const expected = masters.map((master) => ids.filter((id) => masterOf(masters, calculateSlot(keys.meta('jobs', id))) === master).length);
    expect(jobsPerMaster).toEqual(expected);
    expect(jobsPerMaster.reduce((sum, count) => sum + count, 0)).toBe(ids.length);
    expect(jobsPerMaster.filter((count) => count > 0).length).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('a report (a plain @Processor of @nestjs/bullmq) started on one api is served on the other: every progress and log once, in order', async () => {
    const reportsA = new BuildApi(a.baseUrl, 'api A', 'reports');
    const reportsB = new BuildApi(b.baseUrl, 'api B', 'reports');
    const id = await reportsA.start({ pages: 6, pageMs: 30 });
    const reads = await Promise.all(DELIVERIES.map((kind) => reportsB.follow(id, kind).ended));
    for (const events of reads) expect(typesAndData(events)).toEqual(expectedReport(6));
    expect((await reportsB.state(id)).state).toBe('completed');
  }, 60_000);
});

/** The master serving `slot`, by the slot ranges `CLUSTER NODES` gave. */
function masterOf(masters: ClusterNodeView[], slot: number): ClusterNodeView {
  const master = masters.find((node) =>
    node.slots.some((range) => {
      const [from, to = from] = range.split('-').map(Number);
      return slot >= from && slot <= to;
    }),
  );
  if (!master) throw new Error(`no master serves slot ${slot}`);
  return master;
}

describe('Redis Cluster failover: a master SIGKILLed mid-build, its replica promoted, the failed node back as a replica (REDIS_REPLICA_ACKS=1)', () => {
  let cluster: RedisCluster | undefined;
  const processes: AppProcess[] = [];
  let prefix: string;
  let api: BuildApi;

  beforeAll(async () => {
    cluster = await RedisCluster.start();
    prefix = `{fo${randomUUID().slice(0, 8)}}`;
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_CLUSTER_NODES: cluster.urls.join(','),
      JOB_QUEUE_PREFIX: prefix,
      WORKER_CONCURRENCY: '8',
      REDIS_REPLICA_ACKS: '1',
    };
    const [apiProcess] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.worker(env),
      AppProcess.worker(env),
    ]);
    api = new BuildApi(apiProcess.url, 'api');
  }, 90_000);

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await cluster?.destroy();
  }, 30_000);

  it('every build completes; each stream holds every event once, in order; followers got all of it (and at most a moment of unreplicated events)', async () => {
    const STEPS = 40;
    const ids = await mapLimit(
      Array.from({ length: 12 }, (_, i) => i),
      6,
      () => api.start({ steps: STEPS, stepMs: 50, tokensPerStep: 0 }),
    );
    const followers = ids.map((id) => api.follow(id, 'ndjson').ended);
    await Promise.all(
      ids.map((id) => api.waitForEvent(id, (event) => event.type === 'step' && (event.data as { index: number }).index >= 5)),
    );

    // The master holding the most of these jobs, other than BullMQ's own (whose loss BullMQ
    // answers by rerunning jobs: a new attempt, another test's matter).
    const keys = new RedisKeys(prefix);
    const masters = (await cluster!.describe()).filter((node) => node.role === 'master' && !node.failed);
    const bullmq = masterOf(masters, calculateSlot(`${prefix}:jobs:wait`));
    const holding = new Map<number, string[]>();
    for (const id of ids) {
      const master = masterOf(masters, calculateSlot(keys.meta('jobs', id)));
      if (master.port !== bullmq.port) holding.set(master.port, [...(holding.get(master.port) ?? []), id]);
    }
    const [victim, itsJobs] = [...holding].sort((x, y) => y[1].length - x[1].length)[0];
    expect(itsJobs.length).toBeGreaterThan(0);
    await cluster!.kill(victim);
    await cluster!.waitForFailover(victim);
    // With REDIS_REPLICA_ACKS=1 the promoted master's shards take writes again once it has a
    // replica: the failed node, restarted, rejoins as one.
    await cluster!.restart(victim);
    await cluster!.waitUntilHealthy();

    const seen = await Promise.all(followers);
    for (const [index, id] of ids.entries()) {
      // What the (promoted) cluster holds: every event once, in order, one terminal event last.
      const stored: WireEvent[] = [];
      for (let after: string | undefined; ;) {
        const page = await api.poll(id, { after, limit: 1000 });
        stored.push(...page.events);
        if (page.done) break;
        after = page.next;
      }
      expect({ id, events: typesAndData(stored) }).toEqual({ id, events: expectedBuildEvents(STEPS, 0) });
      // The follower got every stored event in order; beyond them only events a dying master had
      // not replicated yet (each then written again under a new id).
      const storedIds = new Set(stored.map((event) => event.id));
      expect(seen[index].filter((event) => storedIds.has(event.id)).map((event) => event.id)).toEqual(stored.map((event) => event.id));
      expect(seen[index].length - stored.length).toBeLessThanOrEqual(2);
    }
  }, 90_000);
});
