import { randomUUID } from 'node:crypto';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, assertOrderedStream, expectedBuildEvents, typesAndData, withoutTs, type WireEvent } from '../support/build-api.js';
import { expectedReport, pageOf } from '../support/distributed-reports.js';
import { FailoverFollower, closeFailoverClients } from '../support/failover-follower.js';
import { RedisCluster } from '../support/redis-cluster.js';
import { stepIndex } from '../faults/fault-cluster.js';

/**
 * The master holding BullMQ's own keys is SIGKILLed while reports (a plain `@nestjs/bullmq`
 * `@Processor`, on the connection `BullModule.forRoot` was given) and builds (`@JobHandler`, on
 * the module's worker connection) run, on a real cluster of 3 masters and 3 replicas and real api
 * and worker processes. The processors' `updateProgress`, `log` and completion wait for the
 * promoted replica and go on, instead of failing the job with ioredis' "Too many Cluster
 * redirections" once its default budget (16 redirections, about 1 to 1.3 s) runs out before the
 * promotion (2.2 to 3.0 s after the kill with `cluster-node-timeout` 1 s).
 */

const NODE_TIMEOUT_MS = 1000;
const REPORTS = 3;
const BUILDS = 3;
const PAGES = 30;
const PAGE_MS = 100;

describe('Redis Cluster failover of the master of BullMQ keys (cluster-node-timeout 1 s): running jobs complete', () => {
  let cluster: RedisCluster | undefined;
  const processes: AppProcess[] = [];
  let prefix: string;
  let reports: BuildApi;
  let builds: BuildApi;

  beforeAll(async () => {
    cluster = await RedisCluster.start({ nodeTimeoutMs: NODE_TIMEOUT_MS });
    prefix = `{bf${randomUUID().slice(0, 8)}}`;
    const env = { JOB_QUEUE_BACKEND: 'bullmq', REDIS_CLUSTER_NODES: cluster.urls.join(','), JOB_QUEUE_PREFIX: prefix };
    // A report worker runs one report at a time (the processor's BullMQ concurrency is 1): one per report.
    const [api] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      ...Array.from({ length: REPORTS }, () => AppProcess.worker(env)),
    ]);
    reports = new BuildApi(api.url, 'api', 'reports');
    builds = new BuildApi(api.url, 'api');
  }, 60_000);

  afterEach(() => closeFailoverClients());

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await cluster?.destroy();
  }, 30_000);

  it('reports and builds running when that master is SIGKILLed all complete, each stream exact (one attempt, every page and step in order)', async () => {
    const jobs = [
      ...(await Promise.all(Array.from({ length: REPORTS }, () => reports.start({ pages: PAGES, pageMs: PAGE_MS })))).map((id) => ({
        api: reports,
        id,
        expected: expectedReport(PAGES),
      })),
      ...(await Promise.all(Array.from({ length: BUILDS }, () => builds.start({ steps: PAGES, stepMs: PAGE_MS })))).map((id) => ({
        api: builds,
        id,
        expected: expectedBuildEvents(PAGES, 0),
      })),
    ];
    // Followers that resume where they were after a broken stream or a 503 (the api's reads may
    // fail fast during the failover; the workers' writes must not).
    const followers = jobs.map(({ api, id }) => new FailoverFollower([api], id, 'ndjson', { timeoutMs: 40_000 }));
    // Every job runs, a few pages (steps) in.
    const progressed = (event: WireEvent): boolean => (pageOf(event) ?? stepIndex(event) ?? 0) >= 2;
    await Promise.all(followers.map((follower) => follower.waitFor(progressed)));

    // BullMQ's keys of both queues (`<prefix>:reports:...`, `<prefix>:jobs:...`) hash to the prefix's tag.
    const bullmq = await cluster!.masterOf(`${prefix}:reports:wait`);
    const killedAt = Date.now();
    await cluster!.kill(bullmq.port);
    await cluster!.waitForFailover(bullmq.port);
    const promotedAfterMs = Date.now() - killedAt;

    const seen = await Promise.all(followers.map((follower) => follower.ended));
    for (const [index, { api, id, expected }] of jobs.entries()) {
      const label = `${api.resource} ${id}`;
      assertOrderedStream(seen[index], label);
      expect({ label, events: typesAndData(seen[index]) }).toEqual({ label, events: expected });
      // What the cluster holds is what the follower got.
      const stored: WireEvent[] = [];
      for (let after: string | undefined; ;) {
        const page = await api.poll(id, { after, limit: 1000 });
        stored.push(...page.events);
        if (page.done) break;
        after = page.next;
      }
      expect({ label, events: withoutTs(stored) }).toEqual({ label, events: withoutTs(seen[index]) });
      expect((await api.state(id)).state).toBe('completed');
    }
    // The reports went through the failover: one of their calls waited at least the node timeout
    // (their pages are 100 ms apart otherwise).
    for (const [index, { api, id }] of jobs.entries()) {
      if (api !== reports) continue;
      const longestWaitMs = Math.max(...seen[index].slice(1).map((event, i) => event.ts! - seen[index][i].ts!));
      expect({ id, longestWaitMs, promotedAfterMs, waited: longestWaitMs >= NODE_TIMEOUT_MS }).toMatchObject({ id, waited: true });
    }
  }, 60_000);
});
