import { setTimeout as delay } from 'node:timers/promises';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { bridgeLeaseHolder } from 'nestjs-job-streams';
import { AppProcess, DEMO_APPS } from '../support/app-process.js';
import { assertOrderedStream, expectEveryReaderGot, typesAndData, withoutTs, type BuildApi, type WireEvent } from '../support/build-api.js';
import { READ_TIMEOUT_MS, ReportsDeployment, expectServedAlike, expectedReport, pageOf } from '../support/distributed-reports.js';
import { FailoverEventSource, FailoverFollower } from '../support/failover-follower.js';
import { prometheusSamples } from '../support/prometheus-samples.js';
import { attemptsMatching, expectRerunAfterKill, type FaultCluster } from '../faults/fault-cluster.js';

/**
 * Foreign workers across processes: reports of the demo's `reports` queue run by a worker that
 * loads none of this repository's code (`fixtures/plain-bullmq-worker.mjs`: plain `bullmq`, as a
 * service in another language or an old Node service runs them). Two demo apis that run no
 * processors (`JOB_QUEUE_WORKER=false`) serve the reports; one of them at a time (the holder of the
 * bridge lease of `reports`) bridges BullMQ's queue events into the reports' streams.
 */

/** BullMQ's `processedBy` of the plain worker's jobs (the demo worker's have another, or none). */
const PLAIN_WORKER_NAME = 'plain-node-worker';
/** The bridge's lease (renewed every second): a dead holder's queue is taken over within about this long. */
const LEASE_MS = 3000;
/** BullMQ's lock of the plain workers where one is killed: its report runs again within about twice this. */
const LOCK_MS = 2000;

/** Starts the plain BullMQ worker with the cluster's `REDIS_URL` and `JOB_QUEUE_PREFIX`; resolves once BullMQ is ready. */
function plainWorker(env: Record<string, string>): Promise<AppProcess> {
  return AppProcess.script(
    'test/e2e/fixtures/plain-bullmq-worker.mjs',
    { ...env, WORKER_NAME: PLAIN_WORKER_NAME },
    /Plain BullMQ worker ready/,
  );
}

/**
 * Resolves with the pid of the process that leads the bridge of `reports` (other than `not`), once
 * it holds the lease and a position is recorded: from then on every entry of BullMQ's events stream
 * is bridged (a first leader starts at the stream's head, so a job started before is not).
 */
async function bridgeLeader(commands: Redis, prefix: string, options: { not?: number } = {}): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [lease, position] = await commands.mget(`${prefix}:{bridge:reports}:lease`, `${prefix}:{bridge:reports}:position`);
    const pid = lease === null ? undefined : bridgeLeaseHolder(lease)?.pid;
    if (pid !== undefined && pid !== options.not && position !== null) return pid;
    if (Date.now() > deadline) throw new Error(`no bridge leader of "reports" (other than ${options.not}) within 10 s: lease ${lease}`);
    await delay(20); // polling period
  }
}

/** The bridge's read counters of `reports` on `api`'s `/metrics` (0 while it never led the queue). */
async function bridgeReads(api: BuildApi): Promise<{ reads: number; entries: number }> {
  const values = prometheusSamples(await (await api.fetch('/metrics')).text());
  return {
    reads: values.get('job_queue_bridge_reads{queue="reports"}') ?? 0,
    entries: values.get('job_queue_bridge_entries_read{queue="reports"}') ?? 0,
  };
}

/** Runs `fn` with a plain BullMQ `Queue` of `reports` on the cluster, to look at BullMQ's own view of the jobs. */
async function withBullQueue<T>(cluster: FaultCluster, fn: (queue: Queue) => Promise<T>): Promise<T> {
  const queue = new Queue('reports', { connection: { url: cluster.redis.url }, prefix: cluster.prefix });
  try {
    return await fn(queue);
  } finally {
    await queue.close();
  }
}

describe('foreign workers: reports run by a plain BullMQ worker process, served by 2 demo apis through the bridge (bullmq)', () => {
  const deployment = ReportsDeployment.perDescribe({ app: DEMO_APPS });

  it('reports POSTed to api A, run by the plain worker: both apis serve started, every progress once in order, completed, by polling, SSE and NDJSON; no log events', async () => {
    const { cluster, a, b } = deployment();
    const PAGES = 6;
    await bridgeLeader(cluster.commands, cluster.prefix);
    const worker = await deployment().run(plainWorker);
    const ids = await Promise.all(Array.from({ length: 3 }, () => a.start({ pages: PAGES, pageMs: 100 })));

    await expectServedAlike([a, b], ids, () => expectedReport(PAGES, 1, { logs: false }));
    await withBullQueue(cluster, async (queue) => {
      for (const id of ids) {
        for (const api of [a, b]) {
          expect(await api.state(id)).toMatchObject({ id, name: 'report', state: 'completed', attempt: 1, result: { pages: PAGES } });
        }
        // The plain worker ran it and logged every page: BullMQ keeps those lines to itself.
        const job = await queue.getJob(id);
        const logs = Array.from({ length: PAGES }, (_, page) => `page ${page + 1} of ${PAGES}`);
        expect({ id, by: job?.processedBy, logs: (await queue.getJobLogs(id)).logs }).toEqual({ id, by: PLAIN_WORKER_NAME, logs });
      }
    });
    expect(await worker.stop('SIGTERM')).toBe(0);
  });

  it('a report the plain worker fails (failAtPage): both apis serve started, the progress up to that page and failed {error}, by all three deliveries', async () => {
    const { cluster, a, b } = deployment();
    await bridgeLeader(cluster.commands, cluster.prefix);
    await deployment().run(plainWorker);
    const id = await b.start({ pages: 5, pageMs: 50, failAtPage: 3 });

    await expectServedAlike([b, a], [id], () => expectedReport(5, 1, { logs: false, failAtPage: 3 }));
    for (const api of [a, b]) {
      expect(await api.state(id)).toMatchObject({ id, state: 'failed', attempt: 1, error: { message: 'Report failed at page 3' } });
    }
  });

  it("a burst of updates (a report with pageMs 0 and no log lines): both apis serve every update once, in order; the leading api's /metrics count the bridge's reads and the entries they returned", async () => {
    const { cluster, a, b, apiProcesses } = deployment();
    const PAGES = 1000;
    const leaderPid = await bridgeLeader(cluster.commands, cluster.prefix);
    const leader = apiProcesses[0].pid === leaderPid ? a : b;
    await deployment().run(plainWorker, { REPORT_LOGS: 'false' });
    const before = await bridgeReads(leader);
    const id = await a.start({ pages: PAGES, pageMs: 0 });
    await expectServedAlike([a, b], [id], () => expectedReport(PAGES, 1, { logs: false }));
    const after = await bridgeReads(leader);
    // At least active, every progress and completed (BullMQ writes a few more entries per job), in fewer reads.
    expect(after.entries - before.entries).toBeGreaterThanOrEqual(PAGES + 2);
    expect(after.reads - before.reads).toBeGreaterThan(0);
    expect(after.reads - before.reads).toBeLessThan(after.entries - before.entries);
  });

  it("mixed: the demo worker and the plain worker on the queue at once; each report's stream is one writer's (progress and log, or progress only), no duplicates, both ran", async () => {
    const { cluster, a, b } = deployment();
    const PAGES = 4;
    await bridgeLeader(cluster.commands, cluster.prefix);
    await Promise.all([deployment().worker(), deployment().run(plainWorker, { WORKER_CONCURRENCY: '2' })]);
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? b : a).start({ pages: PAGES, pageMs: 100 })));

    const ranBy = new Map<string, 'module' | 'plain'>();
    await withBullQueue(cluster, (queue) =>
      expectServedAlike([a, b], ids, async (id) => {
        const by = (await queue.getJob(id))?.processedBy === PLAIN_WORKER_NAME ? 'plain' : 'module';
        ranBy.set(id, by);
        // Only the module's own worker turns `job.log` into events.
        return expectedReport(PAGES, 1, { logs: by === 'module' });
      }),
    );
    expect([...new Set(ranBy.values())].sort()).toEqual(['module', 'plain']);
  });
});

describe('foreign workers: a process SIGKILLed mid-report (bullmq, 2 demo apis, plain BullMQ workers with a 2 s lock)', () => {
  // Its own deployment: every plain worker here has the 2 s lock (BullMQ lets one worker per stalled
  // check period check a queue, so a worker with the default 30 s lock would hold the check off).
  const deployment = ReportsDeployment.perDescribe({ app: DEMO_APPS });
  const lockedWorker = (): Promise<AppProcess> => deployment().run(plainWorker, { JOB_LOCK_DURATION_MS: String(LOCK_MS) });

  it("the plain worker running a report is killed: BullMQ's stalled check runs it again on another plain worker; both apis serve attempt 1 cut short, then started {attempt: 2} and its whole run, one terminal", async () => {
    const { cluster, a, b } = deployment();
    const PAGES = 20;
    await bridgeLeader(cluster.commands, cluster.prefix);
    const first = await lockedWorker();
    const id = await a.start({ pages: PAGES, pageMs: 100 });
    const readers = [
      new FailoverFollower([b], id, 'ndjson', { timeoutMs: READ_TIMEOUT_MS }),
      new FailoverFollower([a], id, 'sse', { timeoutMs: READ_TIMEOUT_MS }),
      new FailoverFollower([b], id, 'polling', { waitMs: 1000, timeoutMs: READ_TIMEOUT_MS }),
    ];
    await readers[0].waitFor((event) => pageOf(event) === 3);
    await lockedWorker();

    const killedAt = Date.now();
    expect(await first.stop('SIGKILL')).toBe('SIGKILL');
    const [all, bySse, byPolling] = await Promise.all(readers.map((reader) => reader.ended));
    assertOrderedStream(all, `report ${id}, NDJSON on ${b.label}`);
    expectRerunAfterKill(
      attemptsMatching(all, (attempt) => expectedReport(PAGES, attempt, { logs: false })),
      killedAt,
      LOCK_MS,
      'progress',
    );
    expect({ sse: bySse, polling: byPolling }).toEqual({ sse: withoutTs(all), polling: all });
    for (const api of [a, b]) expect(await api.state(id)).toMatchObject({ state: 'completed', attempt: 2, result: { pages: PAGES } });
  });

  it('the other api takes the bridge over within about the lease; every reader, pinned to it or moving to it, gets every event once, in order, one terminal', async () => {
    const { cluster, a, b, apiProcesses } = deployment();
    const PAGES = 80;
    const leaderPid = await bridgeLeader(cluster.commands, cluster.prefix);
    const leaderIndex = apiProcesses.findIndex((process) => process.pid === leaderPid);
    expect(leaderIndex).toBeGreaterThanOrEqual(0);
    const [leader, survivor] = leaderIndex === 0 ? [a, b] : [b, a];
    const [leaderProcess, survivorProcess] = leaderIndex === 0 ? apiProcesses : [apiProcesses[1], apiProcesses[0]];
    await lockedWorker();
    const id = await leader.start({ pages: PAGES, pageMs: 100 });

    // Readers on the api that survives, each over one connection (the EventSource too)...
    const pinned = {
      ndjson: new FailoverFollower([survivor], id, 'ndjson', { timeoutMs: READ_TIMEOUT_MS }),
      sse: new FailoverFollower([survivor], id, 'sse', { timeoutMs: READ_TIMEOUT_MS }),
      polling: new FailoverFollower([survivor], id, 'polling', { waitMs: 1000, timeoutMs: READ_TIMEOUT_MS }),
      eventSource: new FailoverEventSource([survivor], id, READ_TIMEOUT_MS),
    };
    // ...and readers on the leader that resume on the survivor from their last event once it dies.
    const moving = (['ndjson', 'sse', 'polling'] as const).map(
      (kind) => new FailoverFollower([leader, survivor], id, kind, { waitMs: 1000, timeoutMs: READ_TIMEOUT_MS }),
    );
    await Promise.all([...Object.values(pinned), ...moving].map((reader) => reader.waitFor((event) => pageOf(event) === 5)));

    const killedAt = Date.now();
    expect(await leaderProcess.stop('SIGKILL')).toBe('SIGKILL');
    expect(await bridgeLeader(cluster.commands, cluster.prefix, { not: leaderPid })).toBe(survivorProcess.pid);
    const takenOverAt = Date.now();
    // The lease runs out up to LEASE_MS after the kill (renewed just before it), and the survivor
    // tries every LEASE_MS / 3, in a phase of its own: at most about LEASE_MS * 4/3, plus slack.
    expect(takenOverAt - killedAt).toBeLessThan(LEASE_MS + LEASE_MS / 3 + 2000);
    expect((await survivor.state(id)).state).toBe('running'); // the takeover came mid-report

    const [all, bySse, byPolling, byEventSource] = await Promise.all([
      pinned.ndjson.ended,
      pinned.sse.ended,
      pinned.polling.ended,
      pinned.eventSource.ended,
    ]);
    assertOrderedStream(all, `report ${id}, NDJSON on ${survivor.label}`);
    // Nothing lost or repeated across the takeover, and no gap: the new leader went on from the recorded position.
    expect(typesAndData(all)).toEqual(expectedReport(PAGES, 1, { logs: false }));
    expect(all.filter((event: WireEvent) => event.ts! > takenOverAt).length).toBeGreaterThan(0);
    expectEveryReaderGot({ report: id }, all, { ndjson: all, polling: byPolling, sse: bySse, eventSource: byEventSource });
    expect([pinned.ndjson.connections.length, pinned.sse.connections.length, pinned.eventSource.requests.length]).toEqual([1, 1, 2]);
    for (const reader of moving) {
      const events = await reader.ended;
      expect({ reader: reader.describe(), events }).toEqual({
        reader: reader.describe(),
        events: reader.kind === 'sse' ? withoutTs(all) : all,
      });
      expect({ reader: reader.describe(), servedBy: reader.servedBy() }).toEqual({
        reader: reader.describe(),
        servedBy: [leader.label, survivor.label],
      });
    }
    expect(await survivor.state(id)).toMatchObject({ state: 'completed', attempt: 1, result: { pages: PAGES } });
  }, 40_000);
});
