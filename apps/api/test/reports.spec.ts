import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { RedisServer } from '../../../test/support/redis-server.js';
import { startApiServer, type ApiServer } from './support/api-server.js';
import { ApiClient, expectError, ndjsonEvents, sseEvents, typesAndData, type WireEvent } from './support/http-client.js';

/** The events of one attempt of a report of `pages` pages, up to page `last`. */
function attemptEvents(attempt: number, pages: number, last: number): Array<{ type: string; data: unknown }> {
  const events: Array<{ type: string; data: unknown }> = [{ type: 'started', data: { attempt } }];
  for (let page = 1; page <= last; page++) {
    events.push({ type: 'progress', data: { page, pages } }, { type: 'log', data: { message: `page ${page} of ${pages}` } });
  }
  return events;
}

/** The events DESIGN.md promises for a report of `pages` pages (ending at `failAtPage` if given). */
function expectedReportEvents(pages: number, end: { failAtPage?: number } = {}): Array<{ type: string; data: unknown }> {
  const events = attemptEvents(1, pages, end.failAtPage ?? pages);
  events.push(
    end.failAtPage
      ? { type: 'failed', data: { error: { message: `Report failed at page ${end.failAtPage}` } } }
      : { type: 'completed', data: { result: { pages } } },
  );
  return events;
}

describe.each(['memory', 'bullmq'] as const)('/reports: a plain @nestjs/bullmq processor served like builds (%s backend)', (backend) => {
  let redis: RedisServer | undefined;
  let server: ApiServer;
  let alice: ApiClient;
  let bob: ApiClient;
  const prefix = `r${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    if (backend === 'bullmq') redis = await RedisServer.start();
    server = await startApiServer({
      JOB_QUEUE_BACKEND: backend,
      AUTH_TOKENS: 'alice:tokenA,bob:tokenB',
      ...(redis ? { REDIS_URL: redis.url, JOB_QUEUE_PREFIX: prefix } : {}),
    });
    alice = new ApiClient(server.baseUrl, 'tokenA', 'reports');
    bob = new ApiClient(server.baseUrl, 'tokenB', 'reports');
  });

  afterAll(async () => {
    await server?.close();
    await redis?.destroy();
  });

  it('POST /reports is 202 { jobId }; polling, SSE and NDJSON serve started, progress and log per page, then completed', async () => {
    const id = await alice.startJob({ pages: 3, pageMs: 0 });
    const polled = await alice.waitForEnd(id);
    expect(typesAndData(polled)).toEqual(expectedReportEvents(3));
    const ndjson = await alice.fetch(`/reports/${id}/events`);
    expect(ndjson.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    expect(await ndjsonEvents(ndjson)).toEqual(polled);
    const sse = await alice.fetch(`/reports/${id}/events`, { headers: { Accept: 'text/event-stream' } });
    expect(await sseEvents(sse)).toEqual(polled.map(({ id: eventId, type, data }) => ({ id: eventId, type, data })));
    // Resumable from any event.
    const resumed = await alice.fetch(`/reports/${id}/events`, { headers: { 'Last-Event-ID': polled[2].id } });
    expect(await ndjsonEvents(resumed)).toEqual(polled.slice(3));
    expect(await alice.state(id)).toMatchObject({ id, name: 'report', state: 'completed', attempt: 1, result: { pages: 3 } });
  });

  it('failAtPage fails the report after that page reported its progress and log; without attempts it runs once', async () => {
    const id = await alice.startJob({ pages: 4, pageMs: 0, failAtPage: 2 });
    expect(typesAndData(await alice.waitForEnd(id))).toEqual(expectedReportEvents(4, { failAtPage: 2 }));
    expect(await alice.state(id)).toMatchObject({
      state: 'failed',
      attempt: 1,
      maxAttempts: 1,
      error: { message: 'Report failed at page 2' },
    });
  });

  it('attempts and backoffMs are job options: the failing report runs again after the backoff, then fails', async () => {
    const backoffMs = 500;
    const id = await alice.startJob({ pages: 2, pageMs: 0, failAtPage: 1, attempts: 2, backoffMs });
    const events = await alice.waitForEnd(id);
    expect(typesAndData(events)).toEqual([
      ...attemptEvents(1, 2, 1),
      ...attemptEvents(2, 2, 1),
      { type: 'failed', data: { error: { message: 'Report failed at page 1' } } },
    ]);
    // The second attempt started no sooner than the backoff after the first one's last call.
    const second = events.findIndex((event) => event.type === 'started' && (event.data as { attempt: number }).attempt === 2);
    expect(events[second].ts - events[second - 1].ts).toBeGreaterThanOrEqual(backoffMs);
    expect(await alice.state(id)).toMatchObject({
      state: 'failed',
      attempt: 2,
      maxAttempts: 2,
      error: { message: 'Report failed at page 1' },
    });
    if (redis) {
      // What any BullMQ client sees: the data exactly as documented, attempts and backoff as options.
      const queue = new Queue('reports', { connection: { url: redis.url }, prefix });
      try {
        const job = await queue.getJob(id);
        expect(JSON.parse(JSON.stringify(job?.data))).toEqual({ pages: 2, pageMs: 0, failAtPage: 1 });
        expect(job?.opts).toMatchObject({ attempts: 2, backoff: { type: 'fixed', delay: backoffMs } });
        expect(job?.attemptsMade).toBe(2);
      } finally {
        await queue.close();
      }
    }
  });

  it('a running report is cancelled from the API (202), a second cancel is 409; the stream ends with cancelled', async () => {
    const id = await alice.startJob({ pages: 10, pageMs: 60_000 });
    await alice.waitForEvent(id, (event) => event.type === 'started');
    expect((await alice.cancel(id)).status).toBe(202);
    const events: WireEvent[] = await alice.waitForEnd(id);
    expect(typesAndData(events)).toEqual([
      { type: 'started', data: { attempt: 1 } },
      { type: 'cancelled', data: { reason: 'cancelled by alice' } },
    ]);
    await expectError(await alice.cancel(id), 409);
  });

  it('bad input is 400 naming the problem; another owner, an unknown id and a build id are 404', async () => {
    for (const [body, message] of [
      [{ pages: 0 }, /pages must be at least 1/],
      [{ pages: 1001 }, /pages must be at most 1000/],
      [{ pageMs: 60_001 }, /pageMs must be at most 60000/],
      [{ pages: 2, failAtPage: 3 }, /failAtPage must not be greater than pages/],
      [{ pages: '3' }, /pages must be a number/],
      [{ steps: 3 }, /unknown field/],
      [{ attempts: 0 }, /attempts must be at least 1/],
      [{ attempts: 11 }, /attempts must be at most 10/],
      [{ attempts: 1.5 }, /attempts must be an integer/],
      [{ attempts: '2' }, /attempts must be a number/],
      [{ backoffMs: -1 }, /backoffMs must be at least 0/],
      [{ backoffMs: 60_001 }, /backoffMs must be at most 60000/],
      [{ backoffMs: null }, /backoffMs must be a number/],
    ] as const) {
      await expectError(await alice.postBuild(body), 400, message);
    }
    const id = await alice.startJob({ pages: 1, pageMs: 0 });
    await alice.waitForEnd(id);
    await expectError(await bob.fetch(`/reports/${id}`), 404);
    await expectError(await bob.fetch(`/reports/${id}/events`), 404);
    await expectError(await bob.cancel(id), 404);
    await expectError(await alice.fetch(`/reports/${randomUUID()}`), 404);
    // Builds and reports are different queues: a report's id is no build.
    await expectError(await alice.fetch(`/builds/${id}`), 404);
    await expectError(await new ApiClient(server.baseUrl).fetch(`/reports/${id}`), 401);
  });
});
