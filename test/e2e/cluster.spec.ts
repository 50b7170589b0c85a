import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisKeys } from 'nestjs-job-streams';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, expectedBuildEvents, mapLimit, typesAndData, type FollowKind } from '../support/build-api.js';
import { expectedReport } from '../support/distributed-reports.js';
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

  it('builds started on one api read identically on the other by polling, NDJSON and SSE; their keys lie on every master', async () => {
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

    // Each job's keys are on the master serving its shard's slot: with 24 jobs, on every master.
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
    expect(jobsPerMaster.reduce((sum, count) => sum + count, 0)).toBe(ids.length);
    for (const count of jobsPerMaster) expect(count).toBeGreaterThan(0);
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
