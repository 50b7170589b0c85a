import { setTimeout as delay } from 'node:timers/promises';
import { Queue, QueueEvents } from 'bullmq';
import type { AppProcess, AppRoles } from './app-process.js';
import {
  BuildApi,
  assertOrderedStream,
  expectEveryReaderGot,
  typesAndData,
  withoutTs,
  type FollowKind,
  type WireEvent,
} from './build-api.js';
import { FailoverEventSource, FailoverFollower, closeFailoverClients } from './failover-follower.js';
import { FaultCluster, attemptsMatching, expectRerunAfterKill } from '../faults/fault-cluster.js';

/**
 * Reports across processes, the acceptance scenarios of a `@nestjs/bullmq` stack with this module:
 * jobs of the BullMQ queue `reports`, run by a plain `@Processor` whose `updateProgress` and `log`
 * calls become the job's event stream. Two apis that run no processors serve the clients, worker
 * processes run the reports, all on one real Redis (with its append-only file on where Redis is
 * restarted). Each test starts the workers it needs, so that it knows which one runs a report.
 *
 * The apps under test answer `POST /reports` `{ pages, pageMs }` with 202 `{ jobId }` and serve
 * `GET /reports/:id` and `GET /reports/:id/events` (polling, SSE, NDJSON) as the demo api does;
 * their workers take BullMQ's lock duration from `JOB_LOCK_DURATION_MS`.
 */

/** BullMQ lock of a running report in the kill test: a killed worker's report runs again within about twice this. */
const LOCK_MS = 2000;
/** How long Redis stays away in the restart test: about five pages of a report (a processor's call made meanwhile waits for it). */
const OUTAGE_MS = 1000;
const DELIVERIES: readonly FollowKind[] = ['polling', 'sse', 'ndjson'];
/** A reader that has not got its terminal event by then fails with what it got (before the test's own timeout). */
export const READ_TIMEOUT_MS = 25_000;

export type Expected = Array<{ type: string; data: unknown }>;

/**
 * What a whole run of attempt `attempt` of a report of `pages` pages emits, as `{ type, data }`:
 * per page `progress` and, when `logs` (a worker with this module ran it; the default), `log`;
 * then `completed`, or `failed` at `failAtPage`.
 */
export function expectedReport(pages: number, attempt = 1, options: { logs?: boolean; failAtPage?: number } = {}): Expected {
  const { logs = true, failAtPage } = options;
  const events: Expected = [{ type: 'started', data: { attempt } }];
  for (let page = 1; page <= (failAtPage ?? pages); page++) {
    events.push({ type: 'progress', data: { page, pages } });
    if (logs) events.push({ type: 'log', data: { message: `page ${page} of ${pages}` } });
  }
  if (failAtPage === undefined) events.push({ type: 'completed', data: { result: { pages } } });
  else events.push({ type: 'failed', data: { error: { message: `Report failed at page ${failAtPage}` } } });
  return events;
}

/** The page of a `progress` event, undefined for any other event. */
export const pageOf = (event: WireEvent): number | undefined =>
  event.type === 'progress' ? (event.data as { page: number }).page : undefined;

/**
 * Follows each report of `ids` from its start on every api of `apis` by polling, SSE and NDJSON
 * (most readers come before a worker picked the report). Once every reader has ended, checks per
 * report that the first reader's events (polling on the first api) are ordered with one terminal
 * event and are `expected(id)` as `{ type, data }`, and that every other reader got the very same
 * events (same ids; SSE carries no `ts`). Returns the events of each report.
 */
export async function expectServedAlike(
  apis: readonly BuildApi[],
  ids: readonly string[],
  expected: (id: string) => Expected | Promise<Expected>,
): Promise<WireEvent[][]> {
  const readers = ids.map((id) => apis.flatMap((api) => DELIVERIES.map((kind) => api.follow(id, kind, { timeoutMs: READ_TIMEOUT_MS }))));
  const received = await Promise.all(readers.map((ofReport) => Promise.all(ofReport.map((reader) => reader.ended))));
  for (const [i, id] of ids.entries()) {
    const reference = received[i][0];
    assertOrderedStream(reference, `report ${id}, ${readers[i][0].describe()}`);
    expect({ report: id, events: typesAndData(reference) }).toEqual({ report: id, events: await expected(id) });
    for (const [j, reader] of readers[i].entries()) {
      const same = reader.kind === 'sse' ? withoutTs(reference) : reference;
      expect({ reader: reader.describe(), events: received[i][j] }).toEqual({ reader: reader.describe(), events: same });
    }
  }
  return received.map((ofReport) => ofReport[0]);
}

/**
 * A {@link FaultCluster} with its two apis (as clients of their reports) and the workers a test
 * starts. Each describe below has its own: BullMQ lets one worker per `stalledInterval` check a
 * queue for stalled jobs (its `stalled-check` key lives that long), so workers on the default 30 s
 * lock left by one test would hold off the stalled check of the 2 s workers of another for up to
 * 30 s, which no deployment does (its workers share one setting).
 */
export class ReportsDeployment {
  /** Workers a test started; {@link endWorkers} ends the ones still running. */
  private workers: AppProcess[] = [];

  private constructor(
    readonly cluster: FaultCluster,
    readonly a: BuildApi,
    readonly b: BuildApi,
    /** The processes of {@link a} and {@link b}, in that order. */
    readonly apiProcesses: readonly [AppProcess, AppProcess],
  ) {}

  static async start(options: { app: AppRoles; appendOnly?: boolean }): Promise<ReportsDeployment> {
    const cluster = await FaultCluster.start(options);
    try {
      const [apiA, apiB] = await Promise.all([cluster.api('api A'), cluster.api('api B')]);
      return new ReportsDeployment(
        cluster,
        new BuildApi(apiA.process.url, apiA.client.label, 'reports'),
        new BuildApi(apiB.process.url, apiB.client.label, 'reports'),
        [apiA.process, apiB.process],
      );
    } catch (error) {
      await cluster.close();
      throw error;
    }
  }

  /**
   * Gives the enclosing describe its own deployment: started before its first test, its workers
   * and clients ended after each test, all of it ended after the last. Returns its accessor.
   */
  static perDescribe(options: { app: AppRoles; appendOnly?: boolean }): () => ReportsDeployment {
    let deployment: ReportsDeployment | undefined;
    beforeAll(async () => {
      deployment = await ReportsDeployment.start(options);
    }, 30_000);
    afterEach(async () => {
      closeFailoverClients();
      await deployment?.endWorkers();
    });
    afterAll(async () => {
      await deployment?.cluster.close();
    }, 20_000);
    return () => {
      if (!deployment) throw new Error('the deployment did not start');
      return deployment;
    };
  }

  /** Starts a worker process; resolves once it runs. */
  worker(env: Record<string, string> = {}): Promise<AppProcess> {
    return this.endedAfterTest(this.cluster.worker(env));
  }

  /** Starts a process of any kind as {@link FaultCluster.run} does; it is ended after the test, as workers are. */
  run(start: (env: Record<string, string>) => Promise<AppProcess>, env: Record<string, string> = {}): Promise<AppProcess> {
    return this.endedAfterTest(this.cluster.run(start, env));
  }

  private async endedAfterTest(starting: Promise<AppProcess>): Promise<AppProcess> {
    const started = await starting;
    this.workers.push(started);
    return started;
  }

  async endWorkers(): Promise<void> {
    await Promise.all(this.workers.map((process) => process.stop('SIGKILL')));
    this.workers = [];
  }
}

/**
 * Declares the distributed report scenarios for the apps `app` starts (`name` names them in the
 * test titles): every report served whole, in order, exactly once on both apis by polling, SSE and
 * NDJSON while `QueueEvents` sees every progress update; a Redis restart mid-report; a worker
 * SIGKILLed mid-report.
 */
export function describeDistributedReports(name: string, app: AppRoles): void {
  describe(`distributed reports of ${name}: a plain @Processor served by 2 apis, run by 2 workers (bullmq, append-only Redis)`, () => {
    const deployment = ReportsDeployment.perDescribe({ app, appendOnly: true });
    const worker = (): Promise<AppProcess> => deployment().worker();
    let queueEvents: QueueEvents | undefined;

    afterEach(async () => {
      await queueEvents?.close();
      queueEvents = undefined;
    });

    it('reports started on api A are served whole, in order, once, on both apis by polling, SSE and NDJSON; QueueEvents sees every progress update', async () => {
      const { cluster, a, b } = deployment();
      const REPORTS = 4;
      const PAGES = 8;
      await Promise.all([worker(), worker()]);
      queueEvents = new QueueEvents('reports', { connection: { url: cluster.redis.url }, prefix: cluster.prefix });
      await queueEvents.waitUntilReady();
      const progressSeen = new Map<string, unknown[]>();
      const completedSeen = new Set<string>();
      let onCompleted = (): void => undefined;
      queueEvents.on('progress', ({ jobId, data }) => progressSeen.set(jobId, [...(progressSeen.get(jobId) ?? []), data]));
      queueEvents.on('completed', ({ jobId }) => {
        completedSeen.add(jobId);
        onCompleted();
      });

      const ids = await Promise.all(Array.from({ length: REPORTS }, () => a.start({ pages: PAGES, pageMs: 150 })));
      // Every delivery on both apis: the same events with the same ids.
      const received = await expectServedAlike([a, b], ids, () => expectedReport(PAGES));

      for (const id of ids) {
        for (const api of [a, b]) {
          expect(await api.state(id)).toMatchObject({ id, name: 'report', state: 'completed', attempt: 1, result: { pages: PAGES } });
        }
      }

      // BullMQ's own view is untouched: QueueEvents got every progress update of every report, in order.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`QueueEvents reported completed for ${JSON.stringify([...completedSeen])}, not for all of ${ids}`)),
          10_000,
        );
        onCompleted = () => {
          if (!ids.every((id) => completedSeen.has(id))) return;
          clearTimeout(timer);
          resolve();
        };
        onCompleted();
      });
      for (const [i, id] of ids.entries()) {
        const pages = Array.from({ length: PAGES }, (_, page) => ({ page: page + 1, pages: PAGES }));
        expect({ report: id, progress: progressSeen.get(id) }).toEqual({ report: id, progress: pages });
        const streamed = received[i].filter((event) => event.type === 'progress').map((event) => event.data);
        expect({ report: id, progress: progressSeen.get(id) }).toEqual({ report: id, progress: streamed });
      }
      // And the job as BullMQ stores it: the data the api added, the last progress, every log line, the result.
      const queue = new Queue('reports', { connection: { url: cluster.redis.url }, prefix: cluster.prefix });
      try {
        for (const id of ids) {
          const job = await queue.getJob(id);
          const logs = Array.from({ length: PAGES }, (_, page) => `page ${page + 1} of ${PAGES}`);
          expect({ id, name: job?.name, data: job?.data, progress: job?.progress, returnvalue: job?.returnvalue }).toEqual({
            id,
            name: 'report',
            data: { pages: PAGES, pageMs: 150 },
            progress: { page: PAGES, pages: PAGES },
            returnvalue: { pages: PAGES },
          });
          expect({ id, logs: (await queue.getJobLogs(id)).logs }).toEqual({ id, logs });
        }
      } finally {
        await queue.close();
      }
    }, 40_000);

    it('Redis restarted mid-report: the reports complete as one attempt and every reader, on either api, gets every event once, in order, one terminal', async () => {
      const { cluster, a, b } = deployment();
      const PAGES = 16;
      await Promise.all([worker(), worker()]);
      const ids = await Promise.all([a, b].map((api) => api.start({ pages: PAGES, pageMs: 200 })));
      // Readers that retry on errors (503, broken streams) and resume from the last event they got.
      const readers = ids.map((id, i) => {
        const [one, other] = i % 2 ? [b, a] : [a, b];
        return {
          sse: new FailoverFollower([one, other], id, 'sse', { timeoutMs: READ_TIMEOUT_MS }),
          ndjson: new FailoverFollower([other, one], id, 'ndjson', { timeoutMs: READ_TIMEOUT_MS }),
          polling: new FailoverFollower([one, other], id, 'polling', { waitMs: 1000, timeoutMs: READ_TIMEOUT_MS }),
          eventSource: new FailoverEventSource([other, one], id, READ_TIMEOUT_MS),
        };
      });
      await Promise.all(
        readers.flatMap((ofReport) => Object.values(ofReport).map((reader) => reader.waitFor((event) => pageOf(event) === 3))),
      );

      const stoppedAt = Date.now();
      await cluster.redis.stop();
      // While Redis is away, both apis answer at once with 503 and Retry-After.
      for (const api of [a, b]) {
        const response = await api.fetch(`/reports/${ids[0]}`, { signal: AbortSignal.timeout(5000) });
        await response.text();
        expect({ api: api.label, status: response.status, retryAfter: response.headers.get('retry-after') }).toEqual({
          api: api.label,
          status: 503,
          retryAfter: '1',
        });
      }
      await delay(OUTAGE_MS); // the outage itself, not a wait for anything: the processors' next calls wait for Redis
      await cluster.redis.restart();
      const restartedAt = Date.now();

      const received = await Promise.all(
        readers.map(({ sse, ndjson, polling, eventSource }) => Promise.all([sse.ended, ndjson.ended, polling.ended, eventSource.ended])),
      );
      for (const [i, id] of ids.entries()) {
        const [bySse, byNdjson, byPolling, byEventSource] = received[i];
        const all: WireEvent[] = await (i % 2 ? a : b).follow(id, 'polling').ended;
        // One uninterrupted run: the worker kept its report, no call was lost or landed twice.
        expect({ report: id, events: typesAndData(all) }).toEqual({ report: id, events: expectedReport(PAGES) });
        assertOrderedStream(all, `report ${id}`);
        // Before the stop: started, pages 1 and 2, and the progress of page 3 at least.
        expect(all.filter((event) => event.ts! < stoppedAt).length).toBeGreaterThanOrEqual(1 + 2 * 2 + 1);
        expect(all.at(-1)!.ts!).toBeGreaterThanOrEqual(restartedAt);
        expectEveryReaderGot({ report: id }, all, { ndjson: byNdjson, polling: byPolling, sse: bySse, eventSource: byEventSource });
        for (const api of [a, b]) expect(await api.state(id)).toMatchObject({ state: 'completed', attempt: 1, result: { pages: PAGES } });
      }
    }, 40_000);
  });

  describe(`distributed reports of ${name}: a worker killed mid-report (bullmq, 2 apis, workers with a 2 s lock)`, () => {
    const deployment = ReportsDeployment.perDescribe({ app });
    const worker = (): Promise<AppProcess> => deployment().worker({ JOB_LOCK_DURATION_MS: String(LOCK_MS) });

    it('a worker killed with SIGKILL mid-report: the other worker runs it again as attempt 2, attempt 1 stays in the stream; readers on both apis get one terminal event and no duplicates', async () => {
      const { a, b } = deployment();
      const PAGES = 24;
      const first = await worker();
      const id = await a.start({ pages: PAGES, pageMs: 200 });
      // Each reader stays on its api throughout; the EventSource reconnects by itself.
      const ndjson = new FailoverFollower([a], id, 'ndjson', { timeoutMs: READ_TIMEOUT_MS });
      const sse = new FailoverFollower([b], id, 'sse', { timeoutMs: READ_TIMEOUT_MS });
      const polling = new FailoverFollower([b], id, 'polling', { timeoutMs: READ_TIMEOUT_MS });
      const eventSource = new FailoverEventSource([a], id, READ_TIMEOUT_MS);
      await ndjson.waitFor((event) => pageOf(event) === 2);
      const second = await worker();
      expect((await a.state(id)).state).toBe('running');

      const killedAt = Date.now();
      expect(await first.stop('SIGKILL')).toBe('SIGKILL');
      const [byNdjson, bySse, byPolling, byEventSource] = await Promise.all([ndjson.ended, sse.ended, polling.ended, eventSource.ended]);

      assertOrderedStream(byNdjson, 'NDJSON on api A');
      expectRerunAfterKill(
        attemptsMatching(byNdjson, (attempt) => expectedReport(PAGES, attempt)),
        killedAt,
        LOCK_MS,
        'progress',
      );
      // Every reader got exactly the same events, each stream over one connection.
      expectEveryReaderGot({ report: id }, byNdjson, { ndjson: byNdjson, polling: byPolling, sse: bySse, eventSource: byEventSource });
      expect([ndjson.connections.length, sse.connections.length]).toEqual([1, 1]);
      expect(eventSource.requests.map(({ status, lastEventId }) => ({ status, lastEventId }))).toEqual([
        { status: 200, lastEventId: undefined },
        { status: 204, lastEventId: byNdjson.at(-1)!.id },
      ]);
      for (const api of [a, b]) {
        expect(await api.state(id)).toMatchObject({ state: 'completed', attempt: 2, result: { pages: PAGES } });
        expect(await api.follow(id, 'polling').ended).toEqual(byNdjson);
      }
      expect(second.child.exitCode).toBeNull();
    }, 40_000);
  });
}
