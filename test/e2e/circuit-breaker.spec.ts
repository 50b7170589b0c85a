import { randomUUID } from 'node:crypto';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, isTerminal, type WireEvent } from '../support/build-api.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * The circuit breaker across processes: one api (JOB_QUEUE_WORKER=false) and four worker processes
 * on one Redis, each worker running one build at a time (WORKER_CONCURRENCY=1), every job name with
 * a breaker that opens after 4 failed attempts (JOB_CIRCUIT_BREAKER=4,60000,COOL_DOWN_MS). The
 * failures are spread over the four workers, one each: a breaker counting per process would never
 * open.
 */

const FAILURES = 4;
const COOL_DOWN_MS = 8_000;
const WORKERS = 4;

interface BreakerView {
  name: string;
  state: 'closed' | 'open' | 'half-open';
  recentFailures: number;
  openUntil?: number;
  options: { failures: number; windowMs: number; coolDownMs: number };
}

describe('circuit breaker shared by 4 worker processes (bullmq): failures on different workers open it for all', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];
  let api: BuildApi;
  let reports: BuildApi;

  beforeAll(async () => {
    redis = await RedisServer.start();
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: redis.url,
      JOB_QUEUE_PREFIX: `breaker-${randomUUID().slice(0, 8)}`,
      WORKER_CONCURRENCY: '1',
      JOB_CIRCUIT_BREAKER: `${FAILURES},60000,${COOL_DOWN_MS}`,
    };
    const [apiProcess] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      ...Array.from({ length: WORKERS }, () => AppProcess.worker(env)),
    ]);
    api = new BuildApi(apiProcess.url, 'api');
    reports = new BuildApi(apiProcess.url, 'api', 'reports');
  }, 90_000);

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  /** Every event of a job, once it ended. */
  async function eventsOf(client: BuildApi, id: string, timeoutMs: number): Promise<WireEvent[]> {
    await client.waitForEvent(id, (event) => isTerminal(event.type), timeoutMs);
    const page = await client.poll(id);
    expect(page.done).toBe(true);
    return page.events;
  }

  async function breaker(name: string): Promise<BreakerView> {
    const response = await api.fetch('/health');
    const body = (await response.json()) as { status: string; backend: string; details: { circuitBreakers: BreakerView[] } };
    expect({ status: response.status, body: { status: body.status, backend: body.backend } }).toEqual({
      status: 200,
      body: { status: 'ok', backend: 'bullmq' },
    });
    const found = body.details.circuitBreakers.find((entry) => entry.name === name);
    if (!found) throw new Error(`GET /health lists no breaker "${name}": ${JSON.stringify(body.details)}`);
    return found;
  }

  const tsOf = (events: WireEvent[], type: string): number => {
    const event = events.find((candidate) => candidate.type === type);
    if (!event || event.ts === undefined) throw new Error(`no ${type} event with a ts in ${JSON.stringify(events)}`);
    return event.ts;
  };

  it('opens after 4 failures spread over 4 workers; no build starts during the cool-down, one probe does after it, its success closes it; reports run throughout', async () => {
    expect(await breaker('build')).toEqual({
      name: 'build',
      state: 'closed',
      recentFailures: 0,
      options: { failures: FAILURES, windowMs: 60_000, coolDownMs: COOL_DOWN_MS },
    });

    // Four builds that fail after about 3 s; with one slot per worker, four running at once are on four workers.
    const failing = await Promise.all(
      Array.from({ length: FAILURES }, () => api.start({ steps: 2, stepMs: 3_000, tokensPerStep: 0, failAtStep: 2 })),
    );
    const failed = await Promise.all(failing.map((id) => eventsOf(api, id, 60_000)));
    for (const events of failed) expect(events.map((event) => event.type)).toEqual(['started', 'step', 'step', 'failed']);
    const lastStart = Math.max(...failed.map((events) => tsOf(events, 'started')));
    const firstFailure = Math.min(...failed.map((events) => tsOf(events, 'failed')));
    // All four ran at the same time: each worker saw one failure, below the threshold on its own.
    expect(lastStart).toBeLessThan(firstFailure);
    const lastFailure = Math.max(...failed.map((events) => tsOf(events, 'failed')));

    // Builds enqueued now are accepted but no worker starts them; a report (another job name) runs at once.
    const held = await Promise.all(Array.from({ length: 3 }, () => api.start({ steps: 1, stepMs: 1_500, tokensPerStep: 0 })));
    const report = await reports.start({ pages: 2, pageMs: 50 });
    const reportEvents = await eventsOf(reports, report, 30_000);
    expect(reportEvents.map((event) => event.type)).toEqual(['started', 'progress', 'log', 'progress', 'log', 'completed']);
    // (Checked only while the cool-down surely lasts: the machine may be slow.)
    const inCoolDown = Date.now() < lastFailure + COOL_DOWN_MS - 1_500;
    if (inCoolDown) {
      for (const id of held) {
        expect((await api.poll(id)).events).toEqual([]);
        expect(await api.state(id)).toMatchObject({ state: 'queued', attempt: 0 });
      }
    }

    const open = await breaker('build');
    expect(open).toMatchObject({ state: 'open', recentFailures: FAILURES });
    expect(open.openUntil).toBeGreaterThanOrEqual(lastFailure + COOL_DOWN_MS - 1_000);
    const openUntil = open.openUntil!;
    expect(tsOf(reportEvents, 'completed')).toBeLessThan(openUntil);
    if (inCoolDown) {
      for (const id of held) expect((await api.state(id)).waitingFor).toEqual({ circuitBreaker: 'build', until: openUntil });
    }

    const ran = await Promise.all(held.map((id) => eventsOf(api, id, COOL_DOWN_MS + 60_000)));
    for (const events of ran)
      expect(events.map((event) => [event.type, event.data])).toEqual([
        ['started', { attempt: 1 }],
        ['step', { index: 1, total: 1 }],
        ['completed', { result: { steps: 1 } }],
      ]);
    const byStart = [...ran].sort((x, y) => tsOf(x, 'started') - tsOf(y, 'started'));
    // None started during the cool-down; the first after it was the probe, alone while it ran (its
    // handler takes 1.5 s after its started event; the breaker closes just before its completed event).
    expect(tsOf(byStart[0], 'started')).toBeGreaterThanOrEqual(openUntil);
    for (const events of byStart.slice(1)) expect(tsOf(events, 'started')).toBeGreaterThanOrEqual(tsOf(byStart[0], 'started') + 1_450);

    expect(await breaker('build')).toMatchObject({ state: 'closed', recentFailures: 0 });
    // Closed again: a build starts at once.
    const after = await api.start({ steps: 1, stepMs: 0, tokensPerStep: 0 });
    expect((await eventsOf(api, after, 20_000)).map((event) => event.type)).toEqual(['started', 'step', 'completed']);
  }, 180_000);
});
