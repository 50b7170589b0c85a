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
 * on one api are read on the other. Each job's own keys (its metadata and events stream) lie in
 * the hash slot of its BullMQ keys: with the prefix's hash tag, on the one master of that tag,
 * where BullMQ keeps the queue. Then that master is SIGKILLed mid-build (with replica acks): the
 * builds complete on the promoted replica with every event once.
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

  it("builds started on one api read identically on the other by polling, NDJSON and SSE; each job's keys lie on the master of BullMQ's hash of the job", async () => {
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

    // Each job's own keys are on the master that holds BullMQ's hash of the job, as a scan of
    // every master finds them: one master for all (the prefix's hash tag), the one the slot map names.
    const keys = new RedisKeys(prefix);
    const masters = (await cluster!.describe()).filter((node) => node.role === 'master' && !node.failed && node.slots.length > 0);
    expect(masters).toHaveLength(3);
    const holders = await keysByMaster(masters, `${prefix}:jobs:*`);
    for (const id of ids) {
      const bullmq = holders.get(keys.bullJob('jobs', id));
      expect({ id, bullmq: bullmq?.length }).toEqual({ id, bullmq: 1 });
      expect({ id, meta: holders.get(keys.meta('jobs', id)), events: holders.get(keys.events('jobs', id)) }).toEqual({
        id,
        meta: bullmq,
        events: bullmq,
      });
    }
    const holding = new Set(ids.map((id) => holders.get(keys.bullJob('jobs', id))![0]));
    expect([...holding]).toEqual([masterOf(masters, calculateSlot(keys.bullJob('jobs', ids[0]))).port]);
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

/** Each key matching `pattern` on any of `masters`, with the ports of the masters that hold it (each scanned on its own). */
async function keysByMaster(masters: ClusterNodeView[], pattern: string): Promise<Map<string, number[]>> {
  const holders = new Map<string, number[]>();
  for (const master of masters) {
    const client = new Redis(master.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      for (const key of await client.keys(pattern)) holders.set(key, [...(holders.get(key) ?? []), master.port]);
    } finally {
      client.disconnect();
    }
  }
  return holders;
}

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

describe("Redis Cluster failover: the master of the builds (their keys and BullMQ's) SIGKILLed mid-build, its replica promoted, the failed node back as a replica (REDIS_REPLICA_ACKS=1)", () => {
  let cluster: RedisCluster | undefined;
  const processes: AppProcess[] = [];
  let prefix: string;
  let api: BuildApi;

  beforeAll(async () => {
    // A replica is promoted 2 to 3 s after the kill with a node timeout of 1 s: within the builds'
    // BullMQ lock (7 s), which their worker renews on the promoted master, so no build is run again.
    cluster = await RedisCluster.start({ nodeTimeoutMs: 1000 });
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

    // The master holding these jobs, as a scan of the masters finds it: each job's own keys lie
    // with BullMQ's hash of the job, all on the master of the prefix's hash tag.
    const keys = new RedisKeys(prefix);
    const masters = (await cluster!.describe()).filter((node) => node.role === 'master' && !node.failed && node.slots.length > 0);
    const holders = await keysByMaster(masters, `${prefix}:jobs:*`);
    const [victim] = holders.get(keys.bullJob('jobs', ids[0])) ?? [];
    for (const id of ids) {
      const where = [keys.bullJob('jobs', id), keys.meta('jobs', id), keys.events('jobs', id)].map((key) => holders.get(key));
      expect({ id, where }).toEqual({ id, where: [[victim], [victim], [victim]] });
    }
    await cluster!.kill(victim);
    await cluster!.waitForFailover(victim);
    // With REDIS_REPLICA_ACKS=1 the promoted master takes the jobs' event writes again once it has
    // a replica: the failed node, restarted, rejoins as one.
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
