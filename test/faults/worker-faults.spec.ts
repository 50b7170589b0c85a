import type { AppProcess } from '../support/app-process.js';
import { assertOrderedStream, expectedBuildEvents, typesAndData, withoutTs, type BuildApi, type WireEvent } from '../support/build-api.js';
import { FailoverEventSource, FailoverFollower, closeFailoverClients } from '../support/failover-follower.js';
import { FaultCluster, attemptsOf, expectRerunAfterKill, stepIndex } from './fault-cluster.js';

/**
 * Worker processes that die or are stopped while they run a build. Two apis (no handlers) serve
 * the clients; each test starts the workers it needs, so that it knows which one runs the build:
 * the first worker is alone when the build starts, the second one joins once it runs.
 *
 * (A worker or api that cannot reach Redis at start is covered by test/e2e/distributed.spec.ts,
 * "... whose REDIS_URL has a password and points where nothing listens exits non-zero ...".)
 */

/** BullMQ lock of a running job: a killed worker's job is run again within about twice this. */
const LOCK_MS = 2000;

describe('faults: workers killed or stopped mid-build (bullmq, 2 apis)', () => {
  let cluster: FaultCluster;
  let a: BuildApi;
  let b: BuildApi;
  /** Workers a test started; afterEach ends the ones still running. */
  let workers: AppProcess[] = [];

  const worker = async (env: Record<string, string> = {}): Promise<AppProcess> => {
    const started = await cluster.worker({ JOB_LOCK_DURATION_MS: String(LOCK_MS), ...env });
    workers.push(started);
    return started;
  };

  beforeAll(async () => {
    cluster = await FaultCluster.start();
    [{ client: a }, { client: b }] = await Promise.all([cluster.api(), cluster.api()]);
  }, 30_000);

  afterEach(async () => {
    closeFailoverClients();
    await Promise.all(workers.map((process) => process.stop('SIGKILL')));
    workers = [];
  });

  afterAll(async () => {
    await cluster?.close();
  }, 20_000);

  it('a worker killed with SIGKILL mid-build: the other worker runs it again as attempt 2; NDJSON, SSE and polling readers get every event once, in order, one terminal', async () => {
    // 18 steps of 240 ms are left after step 2: room for the second worker's start on a busy
    // machine (6 steps, 1.4 s, were not always enough), before the first one is killed.
    const STEPS = 20;
    const TOKENS = 2;
    const first = await worker();
    const id = await a.start({ steps: STEPS, stepMs: 240, tokensPerStep: TOKENS });
    // One NDJSON connection on A, a browser-like EventSource on B (it reconnects by itself) and a
    // long-polling client on B: each stays on its api throughout.
    const ndjson = new FailoverFollower([a], id, 'ndjson');
    const eventSource = new FailoverEventSource([b], id);
    const polling = new FailoverFollower([b], id, 'polling');
    await ndjson.waitFor((event) => stepIndex(event) === 2);
    const second = await worker();
    expect((await a.state(id)).state).toBe('running');

    const killedAt = Date.now();
    expect(await first.stop('SIGKILL')).toBe('SIGKILL');
    const [byNdjson, bySse, byPolling] = await Promise.all([ndjson.ended, eventSource.ended, polling.ended]);

    assertOrderedStream(byNdjson, 'NDJSON on A');
    expectRerunAfterKill(attemptsOf(byNdjson, STEPS, TOKENS), killedAt, LOCK_MS, 'step');
    // Every reader saw exactly the same events, the streams over one connection each (the
    // EventSource reconnected once, after the terminal event, and was told to stop with 204).
    expect(byPolling).toEqual(byNdjson);
    assertOrderedStream(bySse, 'EventSource on B');
    expect(bySse).toEqual(withoutTs(byNdjson));
    expect(ndjson.connections).toHaveLength(1);
    expect(eventSource.requests.map(({ status, lastEventId }) => ({ status, lastEventId }))).toEqual([
      { status: 200, lastEventId: undefined },
      { status: 204, lastEventId: byNdjson.at(-1)!.id },
    ]);
    for (const api of [a, b]) {
      expect(await api.state(id)).toMatchObject({ state: 'completed', attempt: 2, result: { steps: STEPS } });
      expect(await api.follow(id, 'polling').ended).toEqual(byNdjson);
    }
    // The surviving worker is healthy: it runs a new build at once.
    const next = await b.start({ steps: 2, stepMs: 10, tokensPerStep: 1 });
    expect(typesAndData(await a.follow(next, 'ndjson').ended)).toEqual(expectedBuildEvents(2, 1));
    expect(second.child.exitCode).toBeNull();
  }, 40_000);

  it("with the default lock (no JOB_LOCK_DURATION_MS): a SIGKILLed worker's build starts again on another worker within 15 s", async () => {
    const STEPS = 60;
    const started = await cluster.worker({});
    workers.push(started);
    const id = await a.start({ steps: STEPS, stepMs: 250, tokensPerStep: 0 });
    const follower = new FailoverFollower([b], id, 'ndjson', { timeoutMs: 60_000 });
    await follower.waitFor((event) => stepIndex(event) === 2);
    const second = await cluster.worker({});
    workers.push(second);
    const killedAt = Date.now();
    await started.stop('SIGKILL');
    const restarted = await follower.waitFor((event) => event.type === 'started' && (event.data as { attempt: number }).attempt === 2);
    const afterMs = restarted.ts! - killedAt;
    expect(afterMs).toBeGreaterThan(0);
    expect(afterMs).toBeLessThan(15_000);
    await b.cancel(id);
  }, 60_000);

  it('SIGTERM to a worker: it takes no new job, finishes its running build within JOB_SHUTDOWN_GRACE_MS, exits 0; the queued job runs on the next worker', async () => {
    const STEPS = 6;
    const TOKENS = 1;
    const stopping = await worker({ JOB_SHUTDOWN_GRACE_MS: '20000' });
    const id = await a.start({ steps: STEPS, stepMs: 300, tokensPerStep: TOKENS });
    const follower = new FailoverFollower([b, a], id, 'sse');
    await follower.waitFor((event) => stepIndex(event) === 2);

    const termAt = Date.now();
    stopping.child.kill('SIGTERM');
    await cluster.untilWorkerStopsFetching(stopping);
    // The worker still runs the build (with free slots), but must not take this one.
    const queued = await b.start({ steps: 2, stepMs: 10, tokensPerStep: 0 });
    const exit = await stopping.exited();
    const exitedAfterMs = Date.now() - termAt;
    expect(exit).toBe(0);

    const events = await follower.ended;
    assertOrderedStream(events, 'SSE follower');
    expect(typesAndData(events)).toEqual(expectedBuildEvents(STEPS, TOKENS));
    expect(follower.servedBy()).toEqual([b.label]);
    // The build ran on to its end after the SIGTERM (as attempt 1), and the worker exited then.
    const all: WireEvent[] = await a.follow(id, 'polling').ended;
    expect(withoutTs(all)).toEqual(events);
    expect(all.filter((event) => event.ts! > termAt).length).toBeGreaterThanOrEqual(3);
    expect(exitedAfterMs).toBeLessThan(STEPS * 300 + 3000);
    expect(await a.state(id)).toMatchObject({ state: 'completed', attempt: 1 });
    expect(await a.state(queued)).toMatchObject({ state: 'queued', attempt: 0 });
    expect(await a.poll(queued)).toEqual({ events: [], next: '0', done: false });

    await worker();
    expect(typesAndData(await b.follow(queued, 'ndjson').ended)).toEqual(expectedBuildEvents(2, 0));
  }, 30_000);

  it('SIGTERM to a worker whose build outlasts JOB_SHUTDOWN_GRACE_MS: it hands the build back, exits 0, and the other worker runs it as attempt 2; followers on both apis get every event once', async () => {
    // 18 steps of 240 ms after step 2, so that the second worker is up before the SIGTERM.
    const STEPS = 20;
    const TOKENS = 1;
    const GRACE_MS = 600;
    const stopping = await worker({ JOB_SHUTDOWN_GRACE_MS: String(GRACE_MS) });
    const id = await a.start({ steps: STEPS, stepMs: 240, tokensPerStep: TOKENS });
    const followers = [
      new FailoverFollower([a, b], id, 'sse'),
      new FailoverFollower([b, a], id, 'ndjson'),
      new FailoverFollower([a, b], id, 'polling'),
    ];
    await followers[0].waitFor((event) => stepIndex(event) === 2);
    await worker();

    const termAt = Date.now();
    expect(await stopping.stop('SIGTERM')).toBe(0);
    const exitedAfterMs = Date.now() - termAt;
    const [bySse, byNdjson, byPolling] = await Promise.all(followers.map((follower) => follower.ended));

    assertOrderedStream(byNdjson, 'NDJSON follower');
    const attempts = attemptsOf(byNdjson, STEPS, TOKENS);
    expect(attempts).toHaveLength(2);
    const [handedBack, rerun] = attempts;
    // The handler had its grace period: it kept emitting after the SIGTERM, then was stopped.
    const last = handedBack.at(-1)!;
    expect(last.ts! - termAt).toBeGreaterThanOrEqual(GRACE_MS / 2);
    expect(rerun[0].ts!).toBeGreaterThanOrEqual(last.ts!);
    expect(exitedAfterMs).toBeLessThan(GRACE_MS + 4000);
    expect(withoutTs(bySse)).toEqual(withoutTs(byNdjson));
    expect(byPolling).toEqual(byNdjson);
    for (const follower of followers) expect(follower.servedBy()).toHaveLength(1);
    expect(await b.state(id)).toMatchObject({ state: 'completed', attempt: 2 });
    const all: WireEvent[] = await b.follow(id, 'polling').ended;
    expect(all).toEqual(byNdjson);
  }, 40_000);
});
