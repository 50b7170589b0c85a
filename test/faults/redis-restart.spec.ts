import type { AppProcess } from '../support/app-process.js';
import { assertOrderedStream, expectEveryReaderGot, typesAndData, type BuildApi, type WireEvent } from '../support/build-api.js';
import { FailoverEventSource, FailoverFollower, closeFailoverClients } from '../support/failover-follower.js';
import { FaultCluster, expectedAttempt, stepIndex } from './fault-cluster.js';

/**
 * Redis (append-only file on, fsync always) restarted while builds run on two workers and
 * clients follow them on two apis. Nothing is restarted but Redis: the processes must reconnect
 * on their own, the events the handlers emit while Redis is away must land once and in order,
 * and every client must end up with every event once.
 *
 * test/e2e/redis-config-and-outage.spec.ts covers the answers of each endpoint during an outage
 * of a single api in detail; this file is about a restart under load, across instances.
 */

const STEPS = 24;
const TOKENS = 3;
/**
 * About 5 s per build, an event every 50 ms: Redis goes away around step 4 for about 2.5 s, and
 * the builds go on for a while after it is back.
 */
const BUILD = { steps: STEPS, stepMs: 200, tokensPerStep: TOKENS };
/** A long-poll sent just before Redis stops waits this long (and no longer). */
const LONG_POLL_MS = 2500;

describe('faults: Redis restarted mid-build (bullmq, append-only, 2 apis, 2 workers)', () => {
  let cluster: FaultCluster;
  let a: BuildApi;
  let b: BuildApi;
  let processes: AppProcess[];

  beforeAll(async () => {
    cluster = await FaultCluster.start({ appendOnly: true });
    const [apiA, apiB, ...workers] = await Promise.all([cluster.api(), cluster.api(), cluster.worker(), cluster.worker()]);
    a = apiA.client;
    b = apiB.client;
    processes = [apiA.process, apiB.process, ...workers];
  }, 30_000);

  afterEach(() => closeFailoverClients());

  afterAll(async () => {
    await cluster?.close();
  }, 20_000);

  it('workers and readers reconnect on their own; no event is lost or duplicated; requests during the outage get 503 and a pending long-poll returns within its wait', async () => {
    const ids = await Promise.all([a, b, a, b].map((api) => api.start(BUILD)));
    // A build that emits once and then idles for a minute: a long-poll on it can only time out.
    const idle = await a.start({ steps: 1, stepMs: 60_000, tokensPerStep: 0 });
    const followers = ids.map((id, i) => ({
      sse: new FailoverFollower(i % 2 ? [b, a] : [a, b], id, 'sse'),
      ndjson: new FailoverFollower(i % 2 ? [a, b] : [b, a], id, 'ndjson'),
      polling: new FailoverFollower(i % 2 ? [b, a] : [a, b], id, 'polling', { waitMs: 1000 }),
      eventSource: new FailoverEventSource(i % 2 ? [a, b] : [b, a], id),
    }));
    await Promise.all(
      followers.flatMap((clients) => Object.values(clients).map((client) => client.waitFor((event) => stepIndex(event) === 4))),
    );
    const idleStep = await b.waitForEvent(idle, (event) => event.type === 'step');

    // A long-poll that waits when Redis goes away.
    const longPollSentAt = Date.now();
    const longPoll = a
      .fetch(`/builds/${idle}/events?delivery=polling&waitMs=${LONG_POLL_MS}&after=${idleStep.id}`)
      .then(async (response) => ({ status: response.status, body: await response.text(), ms: Date.now() - longPollSentAt }));
    const stoppedAt = Date.now();
    await cluster.redis.stop();

    // Requests that need Redis get a prompt 503 with Retry-After on both apis, never a hang.
    const outageRequests = [
      ['GET', `/builds/${ids[0]}`],
      ['GET', `/builds/${ids[1]}/events?delivery=polling&waitMs=${LONG_POLL_MS}`],
      ['GET', `/builds/${ids[2]}/events`, 'text/event-stream'],
      ['GET', `/builds/${ids[3]}/events`, 'application/x-ndjson'],
      ['POST', `/builds/${ids[0]}/cancel`],
    ] as const;
    const answers = await Promise.all(
      [a, b].flatMap((api) =>
        outageRequests.map(async ([method, path, accept]) => {
          const sentAt = Date.now();
          const response = await api.fetch(path, {
            method,
            headers: accept ? { Accept: accept } : {},
            signal: AbortSignal.timeout(10_000),
          });
          const body = (await response.json()) as { code?: string };
          const ms = Date.now() - sentAt;
          return {
            request: `${api.label} ${method} ${path}`,
            status: response.status,
            retryAfter: response.headers.get('retry-after'),
            code: body.code,
            prompt: ms < 1000 || ms,
          };
        }),
      ),
    );
    for (const answer of answers) {
      expect(answer).toEqual({ request: answer.request, status: 503, retryAfter: '1', code: 'JOB_QUEUE_UNAVAILABLE', prompt: true });
    }
    // The long-poll ends within its wait (an empty page), or got a 503 if it came in after the stop.
    const pending = await longPoll;
    expect(pending.ms).toBeLessThan(LONG_POLL_MS + 1000);
    if (pending.status === 200) expect(JSON.parse(pending.body)).toEqual({ events: [], next: idleStep.id, done: false });
    else expect(pending.status).toBe(503);
    for (const process of processes) expect(process.child.exitCode).toBeNull();

    await cluster.redis.restart();
    const restartedAt = Date.now();

    const results = await Promise.all(
      followers.map((clients) => Promise.all([clients.sse.ended, clients.ndjson.ended, clients.polling.ended, clients.eventSource.ended])),
    );
    for (const [i, id] of ids.entries()) {
      const [bySse, byNdjson, byPolling, byEventSource] = results[i];
      const all: WireEvent[] = await (i % 2 ? a : b).follow(id, 'polling').ended;
      // Exactly the events of one uninterrupted run: the worker kept its job, nothing emitted
      // during the outage was lost, no batch retried across the restart landed twice.
      expect({ build: i, events: typesAndData(all) }).toEqual({ build: i, events: expectedAttempt(1, STEPS, TOKENS) });
      assertOrderedStream(all, `build ${i}`);
      expect(all.filter((event) => event.ts! < stoppedAt).length).toBeGreaterThanOrEqual(4);
      expect(all.at(-1)!.ts!).toBeGreaterThanOrEqual(restartedAt - 1000);
      expectEveryReaderGot({ build: i }, all, { ndjson: byNdjson, polling: byPolling, sse: bySse, eventSource: byEventSource });
      for (const api of [a, b]) expect(await api.state(id)).toMatchObject({ state: 'completed', attempt: 1 });
      // The SSE and NDJSON streams stayed open through the outage: the apis' shared readers
      // picked up where they were once Redis was back, no client had to reconnect.
      const { sse, ndjson } = followers[i];
      expect({ build: i, sse: sse.connections.length, ndjson: ndjson.connections.length }).toEqual({ build: i, sse: 1, ndjson: 1 });
    }

    // The workers take new jobs, and a cancel from either api reaches the worker that runs the
    // idle build (over the pub/sub subscription, re-established after the restart): BullMQ
    // lets go of the job long before its minute is up.
    await Promise.all([untilHealthy(a), untilHealthy(b)]);
    const after = await b.start({ steps: 3, stepMs: 20, tokensPerStep: 2 });
    expect(typesAndData(await a.follow(after, 'ndjson').ended)).toEqual(expectedAttempt(1, 3, 2));
    const cancel = await b.cancel(idle);
    expect(cancel.status).toBe(202);
    await cancel.text();
    expect((await a.follow(idle, 'ndjson').ended).map((event) => event.type)).toEqual(['started', 'step', 'cancelled']);
    await untilNotActive(cluster, idle);
    for (const api of [a, b]) expect((await api.fetch('/health')).status).toBe(200);
    for (const process of processes) expect(process.child.exitCode).toBeNull();
  }, 60_000);

  it('after a restart, a client that follows a job new to its api gets each event as it is appended (the shared reader does not wait out a stale blocking read)', async () => {
    // One follower keeps the shared reader of api A blocked on an idle job across the restart.
    const idle = await b.start({ steps: 1, stepMs: 60_000, tokensPerStep: 0 });
    const idleFollower = new FailoverFollower([a], idle, 'sse');
    await idleFollower.waitFor((event) => event.type === 'step');
    await cluster.redis.restart();
    await Promise.all([untilHealthy(a), untilHealthy(b)]);

    const id = await b.start({ steps: 4, stepMs: 250, tokensPerStep: 0 });
    const follower = new FailoverFollower([a], id, 'ndjson');
    const latencies = await Promise.all(
      ['started', 'step'].map(async (type) => {
        const event = await follower.waitFor((received) => received.type === type);
        return { type, ms: Date.now() - event.ts! };
      }),
    );
    // Normally a few ms; a reader stuck on the XREAD resent at the reconnect delivers after up to 5 s.
    expect(latencies.filter((latency) => latency.ms > 2000)).toEqual([]);
    expect(typesAndData(await follower.ended)).toEqual(expectedAttempt(1, 4, 0));
    expect((await b.cancel(idle)).status).toBe(202);
    expect((await idleFollower.ended).map((event) => event.type)).toEqual(['started', 'step', 'cancelled']);
  }, 30_000);
});

/** Resolves once `api` answers /health with 200 (bounded polling): its Redis connections are back. */
async function untilHealthy(api: BuildApi, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await api.fetch('/health');
    await response.text();
    if (response.status === 200) return;
    if (Date.now() > deadline) throw new Error(`${api.label} not healthy ${timeoutMs} ms after the restart`);
    await new Promise((resolve) => setTimeout(resolve, 20)); // polling period
  }
}

/** Resolves once BullMQ's active list no longer holds `id` (bounded polling). */
async function untilNotActive(cluster: FaultCluster, id: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const active = await cluster.commands.lrange(`${cluster.prefix}:jobs:active`, 0, -1);
    if (!active.includes(id)) return;
    if (Date.now() > deadline) throw new Error(`job ${id} still active ${timeoutMs} ms after its cancel`);
    await new Promise((resolve) => setTimeout(resolve, 20)); // polling period
  }
}
