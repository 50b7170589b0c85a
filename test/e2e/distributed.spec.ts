import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { AppProcess } from '../support/app-process.js';
import {
  BuildApi,
  assertOrderedStream,
  expectedBuildEvents,
  followWithEventSource,
  isTerminal,
  mapLimit,
  readLines,
  typesAndData,
  withoutTs,
  type BuildBody,
  type WireEvent,
} from '../support/build-api.js';
import { freePort } from '../support/free-port.js';
import { clientList, redisConnectionsOf } from '../support/redis-clients.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * Several api and worker processes on one Redis, as deployed: two apis that run no handlers
 * (JOB_QUEUE_WORKER=false) and two workers. Every test starts jobs on one api and reads, follows
 * or cancels them on the other.
 *
 * Worker concurrency is small on purpose, so that a handful of long builds occupies every slot
 * and a job can be held in `queued` for as long as a test needs.
 */

/** Per worker process. */
const CONCURRENCY = 3;
/** Jobs that can run at once across both workers. */
const SLOTS = 2 * CONCURRENCY;
/** A build that runs until it is cancelled (about 17 minutes). */
const LONG_BUILD: BuildBody = { steps: 1000, stepMs: 1000, tokensPerStep: 0 };

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const stepIndex = (event: WireEvent): number | undefined => (event.type === 'step' ? (event.data as { index: number }).index : undefined);

describe('distributed: 2 apis and 2 workers sharing one Redis (bullmq backend)', () => {
  let redis: RedisServer | undefined;
  let commands: Redis | undefined;
  let prefix: string;
  /** Every process started, for afterAll. */
  const processes: AppProcess[] = [];
  let apiProcessA: AppProcess;
  let workerProcesses: AppProcess[];
  let a: BuildApi;
  let b: BuildApi;
  /** Every job a test started: afterEach cancels what is still running, so no test leaves slots busy. */
  let startedJobs: string[] = [];

  const start = async (api: BuildApi, body: BuildBody): Promise<string> => {
    const id = await api.start(body);
    startedJobs.push(id);
    return id;
  };

  /** Starts `count` long builds and resolves once every one of them runs (so it holds a worker slot). */
  const occupySlots = async (count: number): Promise<string[]> => {
    const ids = await Promise.all(range(count).map((i) => start(i % 2 ? b : a, LONG_BUILD)));
    await Promise.all(ids.map((id) => a.waitForEvent(id, (event) => event.type === 'started')));
    return ids;
  };

  /** Cancels jobs (202, or 409 when they already ended) and waits for each one's terminal event. */
  const cancelAndWait = async (api: BuildApi, ids: readonly string[]): Promise<void> => {
    await mapLimit(ids, 50, async (id) => {
      const response = await api.cancel(id);
      const text = await response.text();
      if (response.status !== 202 && response.status !== 409) throw new Error(`cancel of ${id} answered ${response.status} ${text}`);
    });
    await mapLimit(ids, 50, (id) => api.waitForEvent(id, (event) => isTerminal(event.type)));
  };

  beforeAll(async () => {
    redis = await RedisServer.start();
    prefix = `e2e-${randomUUID().slice(0, 8)}`;
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: redis.url,
      JOB_QUEUE_PREFIX: prefix,
      WORKER_CONCURRENCY: String(CONCURRENCY),
      SSE_HEARTBEAT_MS: '1000',
    };
    const apiEnv = { ...env, JOB_QUEUE_WORKER: 'false' };
    const [apiA, apiB, ...workers] = await AppProcess.startAll(processes, [
      AppProcess.api(apiEnv),
      AppProcess.api(apiEnv),
      AppProcess.worker(env),
      AppProcess.worker(env),
    ]);
    apiProcessA = apiA;
    workerProcesses = workers;
    a = new BuildApi(apiA.url, 'api A');
    b = new BuildApi(apiB.url, 'api B');
    commands = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await commands.connect();
  }, 60_000);

  afterEach(async () => {
    const ids = startedJobs;
    startedJobs = [];
    if (!a) return;
    await mapLimit(ids, 50, async (id) => {
      await (await a.cancel(id)).text();
    }).catch(() => undefined);
  }, 30_000);

  afterAll(async () => {
    commands?.disconnect();
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it('a build started on api A reads identically on api B by polling, NDJSON and SSE (and on A), with its state on both', async () => {
    // An event every 5 ms or so, for about a second: long enough for all clients to overlap.
    const STEPS = 30;
    const TOKENS = 5;
    const id = await start(a, { steps: STEPS, stepMs: 30, tokensPerStep: TOKENS });
    // Known on the other instance at once.
    expect(['queued', 'running']).toContain((await b.state(id)).state);

    // Several clients on B at once (as behind a load balancer): long-polling with different page
    // sizes, NDJSON, SSE and a browser-like EventSource; and one NDJSON client on A.
    const polling = b.follow(id, 'polling', { limit: 7 });
    const otherLimits = [1, 3, 100];
    const otherPollers = otherLimits.map((limit) => b.follow(id, 'polling', { limit }));
    const ndjson = b.follow(id, 'ndjson');
    const sse = b.follow(id, 'sse');
    const ndjsonOnA = a.follow(id, 'ndjson');
    const eventSource = followWithEventSource(`${b.baseUrl}/builds/${id}/events`);
    const [byPolling, byNdjson, bySse, byNdjsonOnA, browser, ...byOtherPollers] = await Promise.all([
      polling.ended,
      ndjson.ended,
      sse.ended,
      ndjsonOnA.ended,
      eventSource,
      ...otherPollers.map((poller) => poller.ended),
    ]);

    const expected = expectedBuildEvents(STEPS, TOKENS);
    const received: Array<[string, WireEvent[]]> = [
      ['polling on B, limit 7', byPolling],
      ...byOtherPollers.map((events, i): [string, WireEvent[]] => [`polling on B, limit ${otherLimits[i]}`, events]),
      ['NDJSON on B', byNdjson],
      ['SSE on B', bySse],
      ['EventSource on B', browser.events],
      ['NDJSON on A', byNdjsonOnA],
    ];
    // Event counts per client first: a lost or repeated event shows here with the client's name.
    expect(Object.fromEntries(received.map(([client, events]) => [client, events.length]))).toEqual(
      Object.fromEntries(received.map(([client]) => [client, expected.length])),
    );
    for (const [client, events] of received) {
      expect({ client, events: typesAndData(events) }).toEqual({ client, events: expected });
      assertOrderedStream(events, client);
    }
    expect(polling.pages).toBeGreaterThanOrEqual(Math.ceil(byPolling.length / 7));
    // The same ids (and timestamps) everywhere.
    for (const events of byOtherPollers) expect(events).toEqual(byPolling);
    expect(byNdjson).toEqual(byPolling);
    expect(byNdjsonOnA).toEqual(byPolling);
    expect(bySse).toEqual(withoutTs(byPolling));
    expect(browser.events).toEqual(withoutTs(byPolling));
    const terminal = byPolling.at(-1)!;
    // The browser-like client reconnected once after the end and was told to stop with 204.
    expect(browser.requests.at(-1)).toEqual({ lastEventId: terminal.id, status: 204 });
    expect(browser.requests.slice(0, -1).every((request) => request.status === 200)).toBe(true);

    for (const api of [a, b]) {
      expect(await api.state(id)).toMatchObject({ id, state: 'completed', attempt: 1, result: { steps: STEPS } });
      // A replay by polling pages through the same events; at the terminal event it answers done at once.
      expect(await api.follow(id, 'polling', { limit: 5 }).ended).toEqual(byPolling);
      const before = Date.now();
      expect(await api.poll(id, { after: terminal.id, waitMs: 10_000 })).toEqual({ events: [], next: terminal.id, done: true });
      expect(Date.now() - before).toBeLessThan(2000);
      const resumedAtEnd = api.follow(id, 'sse', { lastEventId: terminal.id });
      expect(await resumedAtEnd.ended).toEqual([]);
      expect(resumedAtEnd.status).toBe(204);
    }
  }, 40_000);

  it('a follower on api B that starts while the job is still queued gets every event once and in order', async () => {
    const blockers = await occupySlots(SLOTS);
    const STEPS = 8;
    const TOKENS = 4;
    const id = await start(a, { steps: STEPS, stepMs: 20, tokensPerStep: TOKENS });
    expect((await b.state(id)).state).toBe('queued');

    const ndjson = b.follow(id, 'ndjson');
    const sse = b.follow(id, 'sse');
    const polling = b.follow(id, 'polling', { limit: 10, waitMs: 2000 });
    await Promise.all([ndjson.opened, sse.opened]);
    // Both streams are open on B and every worker slot is still taken: the job has not run.
    expect((await b.state(id)).state).toBe('queued');
    expect(ndjson.events).toEqual([]);
    expect(sse.events).toEqual([]);

    await cancelAndWait(b, blockers);
    const [byNdjson, bySse, byPolling] = await Promise.all([ndjson.ended, sse.ended, polling.ended]);
    expect(typesAndData(byNdjson)).toEqual(expectedBuildEvents(STEPS, TOKENS));
    assertOrderedStream(byNdjson, 'NDJSON on B');
    expect(byPolling).toEqual(byNdjson);
    expect(bySse).toEqual(withoutTs(byNdjson));
    expect(await a.state(id)).toMatchObject({ state: 'completed', attempt: 1 });
  }, 40_000);

  it('an SSE stream resumes on api B from the last event id received on api A (Last-Event-ID)', async () => {
    const STEPS = 10;
    const TOKENS = 3;
    const id = await start(a, { steps: STEPS, stepMs: 60, tokensPerStep: TOKENS });
    const first = a.follow(id, 'sse');
    await first.waitFor((event) => stepIndex(event) === 3);
    first.stop();
    await expect(first.ended).rejects.toThrow(/stopped by the test/);
    const seen = [...first.events];
    const lastSeen = seen.at(-1)!;

    const resumed = b.follow(id, 'sse', { lastEventId: lastSeen.id });
    const rest = await resumed.ended;
    const all = await a.follow(id, 'polling').ended;
    expect(typesAndData(all)).toEqual(expectedBuildEvents(STEPS, TOKENS));
    expect(rest.length).toBeGreaterThan(0);
    expect(rest.map((event) => event.id)).not.toContain(lastSeen.id);
    expect([...seen, ...rest]).toEqual(withoutTs(all));
    assertOrderedStream([...seen, ...rest], 'SSE on A then B');
    // `?after=` resumes the same way, and an NDJSON client gets the same remainder.
    expect(await b.follow(id, 'ndjson', { after: lastSeen.id }).ended).toEqual(all.slice(seen.length));
  }, 30_000);

  it('a direct-delivery client that disconnects from api A abandons its build: cancelled on its worker within one step, as api B shows', async () => {
    // Long enough that "within one step" leaves room for a stalled api on a busy machine.
    const STEP_MS = 1000;
    const abort = new AbortController();
    const response = await a.fetch('/builds?delivery=direct', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ steps: 40, stepMs: STEP_MS, tokensPerStep: 0 }),
      signal: abort.signal,
    });
    expect(response.status).toBe(200);
    const id = response.headers.get('x-job-id')!;
    for await (const line of readLines(response)) if ((JSON.parse(line) as WireEvent).type === 'step') break;
    const leftAt = Date.now();
    abort.abort();
    const events = await b.follow(id, 'ndjson').ended;
    const cancelled = events.at(-1)!;
    expect(cancelled).toMatchObject({ type: 'cancelled', data: { reason: 'client disconnected' } });
    expect(cancelled.ts! - leftAt).toBeLessThan(STEP_MS);
    expect(events.filter((event) => event.type === 'step').length).toBeLessThanOrEqual(2);
    expect((await b.state(id)).state).toBe('cancelled');
  });

  it('a build with abandonAfterMs 2000 followed on api B keeps running; unfollowed, it is cancelled as abandoned within the bound', async () => {
    const ABANDON_MS = 2000;
    const response = await a.fetch('/builds', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ steps: 100, stepMs: 200, abandonAfterMs: ABANDON_MS }),
    });
    expect(response.status).toBe(202);
    const { jobId: id } = (await response.json()) as { jobId: string };
    const onB = b.follow(id, 'sse');
    // Followed (on the other api) for twice its abandonAfterMs, it runs on.
    await onB.waitFor((event) => stepIndex(event) === Math.ceil((2 * ABANDON_MS) / 200));
    expect((await a.state(id)).state).toBe('running');
    const leftAt = Date.now();
    onB.stop();
    // Its state is no read of its events: watching it does not keep the build alive.
    let state = await a.state(id);
    while (state.state === 'running') {
      await delay(100);
      state = await a.state(id);
    }
    expect(state).toMatchObject({ state: 'cancelled' });
    expect((state.finishedAt as number) - leftAt).toBeLessThan(ABANDON_MS + ABANDON_MS / 4 + 1000);
    const page = await b.poll(id);
    expect(page.events.at(-1)).toMatchObject({ type: 'cancelled', data: { reason: 'abandoned' } });
  });

  it('a cancel from the other api ends a running build within one step, wins over a queued job, and a second cancel is 409', async () => {
    const STEP_MS = 3000;
    await occupySlots(SLOTS - 1);
    // The last free slot: this build runs.
    const running = await start(a, { steps: 100, stepMs: STEP_MS, tokensPerStep: 0 });
    const runningOnA = a.follow(running, 'ndjson');
    await runningOnA.waitFor((event) => stepIndex(event) === 1);

    // Every slot is taken now: this job stays queued until cancelled from B.
    const queued = await start(a, { steps: 3, stepMs: 10, tokensPerStep: 1 });
    const queuedOnA = a.follow(queued, 'ndjson');
    await queuedOnA.opened;
    expect((await b.state(queued)).state).toBe('queued');
    const cancelQueued = await b.cancel(queued);
    expect(cancelQueued.status).toBe(202);
    expect(await cancelQueued.json()).toEqual({ cancelled: true });
    expect(typesAndData(await queuedOnA.ended)).toEqual([{ type: 'cancelled', data: { reason: expect.any(String) } }]);

    // A probe queued behind it: it starts the moment a slot frees up, which shows when the
    // cancelled build's handler really stopped (its stream ends with the cancel either way).
    const probe = await start(a, { steps: 1, stepMs: 0, tokensPerStep: 0 });
    const probeOnB = b.follow(probe, 'ndjson');
    await probeOnB.opened;
    expect((await b.state(probe)).state).toBe('queued');

    const cancelRunning = await b.cancel(running);
    expect(cancelRunning.status).toBe(202);
    expect(await cancelRunning.json()).toEqual({ cancelled: true });
    const runningEvents = await runningOnA.ended;
    const cancelled = runningEvents.at(-1)!;
    expect(cancelled).toMatchObject({ type: 'cancelled', data: { reason: expect.any(String) } });
    assertOrderedStream(runningEvents, 'cancelled build on A');
    const handlerEvents = runningEvents.slice(0, -1);
    expect(typesAndData(handlerEvents)).toEqual(expectedBuildEvents(100, 0).slice(0, handlerEvents.length));

    const probeStarted = await probeOnB.waitFor((event) => event.type === 'started', 4 * STEP_MS);
    expect(probeStarted.ts! - cancelled.ts!).toBeLessThan(STEP_MS);
    expect(typesAndData(await probeOnB.ended)).toEqual(expectedBuildEvents(1, 0));

    // The worker has let go of the build: nothing was appended after the cancel, on either api.
    for (const api of [a, b]) {
      expect(await api.follow(running, 'polling').ended).toEqual(runningEvents);
      expect(await api.state(running)).toMatchObject({ state: 'cancelled' });
      // The queued job never started, although the probe behind it did.
      expect(typesAndData(await api.follow(queued, 'polling').ended)).toEqual([
        { type: 'cancelled', data: { reason: expect.any(String) } },
      ]);
      expect(await api.state(queued)).toMatchObject({ state: 'cancelled', attempt: 0 });
    }
    for (const [api, id] of [
      [a, running],
      [b, running],
      [a, queued],
      [b, queued],
    ] as const) {
      const again = await api.cancel(id);
      expect({ api: api.label, status: again.status }).toEqual({ api: api.label, status: 409 });
      await again.text();
    }
  }, 40_000);

  it('50 concurrent builds started across both apis reach followers on both apis exactly once and in order, run by both workers', async () => {
    const COUNT = 50;
    const STEPS = 20;
    const TOKENS = 5;
    const expected = expectedBuildEvents(STEPS, TOKENS);

    // Which worker runs a job: BullMQ locks a running job with `<prefix>:jobs:<id>:lock` set to
    // `<worker id>:<n>`, the id being a random UUID per BullMQ Worker; each worker process has
    // one Worker (checked below by its blocking connection). Sampled while the jobs run.
    const lockHolders = new Map<string, Set<string>>();
    let sampling = true;
    let ids: string[] = [];
    const sampler = (async () => {
      while (sampling) {
        if (ids.length) {
          const locks = await commands!.mget(ids.map((id) => `${prefix}:jobs:${id}:lock`));
          locks.forEach((token, i) => {
            if (!token) return;
            const holders = lockHolders.get(ids[i]) ?? new Set<string>();
            holders.add(token.slice(0, token.lastIndexOf(':')));
            lockHolders.set(ids[i], holders);
          });
        }
        await delay(20); // sampling period, not a synchronization
      }
    })();

    try {
      ids = await Promise.all(range(COUNT).map((i) => start(i % 2 ? b : a, { steps: STEPS, stepMs: 20, tokensPerStep: TOKENS })));
      const followers = ids.map((id, i) => [
        a.follow(id, i % 2 ? 'ndjson' : 'polling', { limit: 50, timeoutMs: 50_000 }),
        b.follow(id, i % 2 ? 'polling' : 'ndjson', { limit: 50, timeoutMs: 50_000 }),
      ]);
      const results = await Promise.all(followers.map((pair) => Promise.all(pair.map((follower) => follower.ended))));
      results.forEach(([onA, onB], i) => {
        expect({ job: i, events: typesAndData(onA) }).toEqual({ job: i, events: expected });
        assertOrderedStream(onA, `job ${i} on A`);
        expect({ job: i, events: onB }).toEqual({ job: i, events: onA });
      });
    } finally {
      sampling = false;
      await sampler;
    }

    // Every sampled job was held by one worker only, and both workers held some.
    expect(lockHolders.size).toBeGreaterThanOrEqual(COUNT / 2);
    for (const [id, holders] of lockHolders) expect({ id, holders: holders.size }).toEqual({ id, holders: 1 });
    const perWorker = new Map<string, number>();
    for (const holders of lockHolders.values()) for (const worker of holders) perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1);
    expect(perWorker.size).toBe(2);
    // The two BullMQ Workers are the two worker processes: each has exactly one blocking worker
    // connection (named after the queue), the apis none.
    const workerConnection = `${prefix}:${Buffer.from('jobs').toString('base64')}`;
    for (const worker of workerProcesses) expect((await redisConnectionsOf(commands!, worker.pid))[workerConnection]).toBe(1);
    for (const api of processes.slice(0, 2)) expect((await redisConnectionsOf(commands!, api.pid))[workerConnection]).toBeUndefined();
    expect((await clientList(commands!)).filter((client) => client.name === workerConnection)).toHaveLength(2);
  }, 60_000);

  it('one api process keeps the same Redis connections while 500 clients follow 500 jobs on it, and all 500 streams end', async () => {
    const COUNT = 500;
    const ids = await mapLimit(range(COUNT), 50, (i) => start(i % 2 ? b : a, LONG_BUILD));
    const idle = await redisConnectionsOf(commands!, apiProcessA.pid);
    expect(idle[`${prefix}:commands`]).toBeGreaterThanOrEqual(1);
    expect(idle[`${prefix}:reader`]).toBe(1);

    const followers = ids.map((id, i) => a.follow(id, i % 2 ? 'sse' : 'ndjson', { timeoutMs: 50_000 }));
    await Promise.all(followers.map((follower) => follower.opened));
    // The jobs that hold a worker slot (BullMQ's active list) keep streaming live to their
    // followers through the shared reader: each gets a step that was not written when it was asked.
    const active = await commands!.lrange(`${prefix}:jobs:active`, 0, -1);
    expect(active.length).toBe(SLOTS);
    await Promise.all(
      active.map(async (id) => {
        const follower = followers[ids.indexOf(id)];
        const written = (await b.poll(id)).events.map(stepIndex).filter((index) => index !== undefined);
        return follower.waitFor((event) => (stepIndex(event) ?? 0) > Math.max(0, ...written), 5000);
      }),
    );
    const following = await redisConnectionsOf(commands!, apiProcessA.pid);
    expect(following).toEqual(idle);

    // Cancelled from the other api: every one of the 500 streams ends with `cancelled`.
    const statuses = await mapLimit(ids, 50, async (id) => {
      const response = await b.cancel(id);
      await response.text();
      return response.status;
    });
    expect(statuses.filter((status) => status !== 202)).toEqual([]);
    const streams = await Promise.all(followers.map((follower) => follower.ended));
    streams.forEach((events, i) => {
      assertOrderedStream(events, `job ${i}`);
      expect({ job: i, last: events.at(-1)!.type }).toEqual({ job: i, last: 'cancelled' });
      if (events.length > 1) expect(events[0].type).toBe('started');
    });
    expect(streams.filter((events) => events[0].type === 'started').length).toBeGreaterThanOrEqual(1);
    expect(await redisConnectionsOf(commands!, apiProcessA.pid)).toEqual(idle);
  }, 60_000);

  it('a never-enqueued job id is 404 at once on both apis', async () => {
    for (const api of [a, b]) {
      for (const id of [randomUUID(), 'never-enqueued']) {
        const before = Date.now();
        const responses = await Promise.all([
          api.fetch(`/builds/${id}`),
          api.fetch(`/builds/${id}/events?delivery=polling&waitMs=10000`),
          api.fetch(`/builds/${id}/events`, { headers: { Accept: 'application/x-ndjson' } }),
          api.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } }),
          api.fetch(`/builds/${id}/cancel`, { method: 'POST' }),
        ]);
        const answers = await Promise.all(responses.map(async (response) => ({ status: response.status, body: await response.json() })));
        expect(Date.now() - before).toBeLessThan(2000);
        for (const answer of answers) expect(answer).toEqual({ status: 404, body: expect.objectContaining({ statusCode: 404 }) });
      }
    }
  });

  it('an api (and a worker) whose REDIS_URL has a password and points where nothing listens exits non-zero, saying Redis, without the password', async () => {
    const redisPort = await freePort();
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: `redis://user:s3cretpw@127.0.0.1:${redisPort}/0`,
      JOB_QUEUE_PREFIX: prefix,
      JOB_QUEUE_WORKER: 'false',
    };
    const api = AppProcess.spawn('api', { ...env, PORT: String(await freePort()) }, undefined);
    const worker = AppProcess.spawn('worker', env, undefined);
    processes.push(api, worker);
    const timeout = new AbortController();
    const deadline = (app: AppProcess): Promise<number | string> =>
      Promise.race([
        app.exited(),
        delay(20_000, undefined, { signal: timeout.signal }).then(
          () => `still running after 20 s:\n${app.output}`,
          () => 'timer cleared',
        ),
      ]);
    const [apiExit, workerExit] = await Promise.all([deadline(api), deadline(worker)]).finally(() => timeout.abort());
    for (const [app, exit] of [
      [api, apiExit],
      [worker, workerExit],
    ] as const) {
      expect(typeof exit).toBe('number');
      expect(exit).not.toBe(0);
      expect(app.output).toMatch(/Redis/);
      expect(app.output).toContain(`127.0.0.1:${redisPort}`);
      expect(app.output).not.toContain('s3cretpw');
    }
    expect(api.output).not.toMatch(/listening/i);
  }, 30_000);
});
