import { setTimeout as sleep } from 'node:timers/promises';
import { startApiServer, type ApiServer } from './support/api-server.js';
import {
  ApiClient,
  expectError,
  expectedBuildEvents,
  ndjsonEvents,
  readNdjson,
  readSse,
  sseEvents,
  typesAndData,
  type WireEvent,
} from './support/http-client.js';

describe('builds: start, state, cancel, failure', () => {
  let server: ApiServer;
  let api: ApiClient;

  beforeAll(async () => {
    server = await startApiServer();
    api = new ApiClient(server.baseUrl);
  });

  afterAll(() => server?.close());

  it('GET /health: 200 { status: "ok", backend: "memory" }', async () => {
    const response = await api.fetch('/health');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok', backend: 'memory', details: { circuitBreakers: [] } });
  });

  describe('POST /builds', () => {
    it.each([
      ['no body at all', undefined],
      ['an empty object', {}],
    ])('with %s: 202 { jobId } and the defaults (5 steps of 200 ms, no tokens)', async (_, body) => {
      const response = await api.postBuild(body);
      expect(response.status).toBe(202);
      const json = (await response.json()) as { jobId: string };
      expect(json).toEqual({ jobId: expect.any(String) });
      expect(json.jobId.length).toBeGreaterThan(0);
      const events = await api.waitForEvent(json.jobId, (event) => event.type === 'step' && (event.data as { index: number }).index === 2);
      expect(typesAndData(events)).toEqual([
        { type: 'started', data: { attempt: 1 } },
        { type: 'step', data: { index: 1, total: 5 } },
        { type: 'step', data: { index: 2, total: 5 } },
      ]);
      const stepGap = events[2].ts - events[1].ts;
      expect(stepGap).toBeGreaterThanOrEqual(190);
      expect(stepGap).toBeLessThan(2_000);
      expect((await api.cancel(json.jobId)).status).toBe(202);
    });

    it('with every field: 202 { jobId }, and the build follows them', async () => {
      const response = await api.postBuild({ steps: 4, stepMs: 0, tokensPerStep: 3, failAtStep: 3 });
      expect(response.status).toBe(202);
      const { jobId } = (await response.json()) as { jobId: string };
      const events = await api.waitForEnd(jobId);
      expect(typesAndData(events)).toEqual(expectedBuildEvents(4, 3, { failAtStep: 3 }));
    });

    it('each start gets a new id', async () => {
      const ids = await Promise.all([1, 2, 3].map(() => api.startBuild({ steps: 1, stepMs: 0 })));
      expect(new Set(ids).size).toBe(3);
    });

    it.each([
      ['steps 1', { steps: 1, stepMs: 0 }, 3],
      ['steps 10000', { steps: 10_000, stepMs: 0 }, 10_002],
      ['tokensPerStep 1000', { steps: 1, stepMs: 0, tokensPerStep: 1000 }, 1_003],
      ['tokensPerStep 0', { steps: 2, stepMs: 0, tokensPerStep: 0 }, 4],
      ['failAtStep equal to steps', { steps: 2, stepMs: 0, failAtStep: 2 }, 4],
      ['failAtStep 1', { steps: 2, stepMs: 0, failAtStep: 1 }, 3],
      ['integral numbers written with a fraction', { steps: 2.0, stepMs: 0.0 }, 4],
    ])('accepts the boundary value %s', async (_, body, eventCount) => {
      const id = await api.startBuild(body);
      const events = await api.waitForEnd(id);
      expect(events).toHaveLength(eventCount);
    });

    it('accepts stepMs 60000 (the build then waits a minute per step)', async () => {
      const id = await api.startBuild({ steps: 1, stepMs: 60_000 });
      await api.waitForEvent(id, (event) => event.type === 'step');
      expect((await api.state(id)).state).toBe('running');
      expect((await api.cancel(id)).status).toBe(202);
    });
  });

  describe('GET /builds/:id', () => {
    it('running, then completed, with attempt and createdAt', async () => {
      const before = Date.now();
      const id = await api.startBuild({ steps: 2, stepMs: 150 });
      await api.waitForEvent(id, (event) => event.type === 'started');
      const running = await api.state(id);
      expect(running).toEqual(expect.objectContaining({ id, state: 'running', attempt: 1, createdAt: expect.any(Number) }));
      expect(running.createdAt).toBeGreaterThanOrEqual(before);
      expect(running.createdAt).toBeLessThanOrEqual(Date.now());
      await api.waitForEnd(id);
      const completed = await api.state(id);
      expect(completed).toEqual(expect.objectContaining({ id, state: 'completed', attempt: 1, createdAt: running.createdAt }));
    });

    it('failed after failAtStep', async () => {
      const id = await api.startBuild({ steps: 3, stepMs: 0, failAtStep: 2 });
      await api.waitForEnd(id);
      expect(await api.state(id)).toEqual(expect.objectContaining({ id, state: 'failed', attempt: 1, createdAt: expect.any(Number) }));
    });
  });

  describe('failAtStep', () => {
    it('the stream ends with `failed` whose error message names the step; state failed', async () => {
      const id = await api.startBuild({ steps: 5, stepMs: 0, tokensPerStep: 1, failAtStep: 3 });
      const response = await api.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } });
      const events = await sseEvents(response);
      expect(typesAndData(events)).toEqual(expectedBuildEvents(5, 1, { failAtStep: 3 }));
      const failed = events.at(-1)!;
      expect(failed).toEqual({ id: expect.any(String), type: 'failed', data: { error: { message: expect.stringMatching(/\bstep 3\b/) } } });
      expect((await api.state(id)).state).toBe('failed');
      expect(typesAndData(await ndjsonEvents(await api.fetch(`/builds/${id}/events`)))).toEqual(typesAndData(events));
    });
  });

  describe('POST /builds/:id/cancel', () => {
    it('mid-build: 202 { cancelled: true }; the stream ends with `cancelled` within one step; a later cancel is 409', async () => {
      const STEP_MS = 20_000;
      const id = await api.startBuild({ steps: 3, stepMs: STEP_MS, tokensPerStep: 0 });
      const response = await api.fetch(`/builds/${id}/events`);
      const events: WireEvent[] = [];
      let cancelledAt = 0;
      for await (const event of readNdjson(response)) {
        events.push(event);
        if (event.type === 'step') {
          expect((await api.state(id)).state).toBe('running');
          const cancel = await api.cancel(id);
          cancelledAt = Date.now();
          expect(cancel.status).toBe(202);
          expect(await cancel.json()).toEqual({ cancelled: true });
        }
      }
      const endedAfter = Date.now() - cancelledAt;
      expect(typesAndData(events)).toEqual([
        { type: 'started', data: { attempt: 1 } },
        { type: 'step', data: { index: 1, total: 3 } },
        { type: 'cancelled', data: { reason: expect.any(String) } },
      ]);
      expect(endedAfter).toBeLessThan(STEP_MS / 4);
      expect(await api.state(id)).toEqual(expect.objectContaining({ id, state: 'cancelled', attempt: 1 }));
      await expectError(await api.cancel(id), 409, /ended|finished|cancelled/i);
      // Nothing followed the terminal event, and the replay is the same.
      expect((await api.pollAll(id)).events).toEqual(events);
    });

    it.each([
      ['completed', { steps: 1, stepMs: 0 }],
      ['failed', { steps: 1, stepMs: 0, failAtStep: 1 }],
    ])('a %s build: 409 with a JSON message, and the build is unchanged', async (state, body) => {
      const id = await api.startBuild(body);
      const events = await api.waitForEnd(id);
      await expectError(await api.cancel(id), 409, /ended|finished/i);
      expect((await api.state(id)).state).toBe(state);
      expect((await api.pollAll(id)).events).toEqual(events);
    });
  });

  describe('an unknown job id: 404 with a JSON message on every route, at once', () => {
    const ids = ['5b0a3c1e-8a4f-4d2b-9c7e-2f1d0e6a9b3c', 'no-such-build', '12345'];

    it.each(ids)('GET /builds/%s', async (id) => {
      await expectError(await api.fetch(`/builds/${id}`), 404, /not found/i);
    });

    it.each(ids)('GET /builds/%s/events?delivery=polling (even with waitMs)', async (id) => {
      const asked = Date.now();
      await expectError(await api.fetch(`/builds/${id}/events?delivery=polling&waitMs=20000`), 404, /not found/i);
      expect(Date.now() - asked).toBeLessThan(5_000);
    });

    it.each(ids)('GET /builds/%s/events as SSE', async (id) => {
      await expectError(await api.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } }), 404, /not found/i);
    });

    it.each(ids)('GET /builds/%s/events as NDJSON', async (id) => {
      await expectError(await api.fetch(`/builds/${id}/events`), 404, /not found/i);
    });

    it.each(ids)('POST /builds/%s/cancel', async (id) => {
      await expectError(await api.cancel(id), 404, /not found/i);
    });
  });
});

describe('builds: queued state (WORKER_CONCURRENCY=1)', () => {
  let server: ApiServer;
  let api: ApiClient;

  beforeAll(async () => {
    server = await startApiServer({ WORKER_CONCURRENCY: '1' });
    api = new ApiClient(server.baseUrl);
  });

  afterAll(() => server?.close());

  it('queued (attempt 0) while the worker is busy, then running, completed; a queued build cancels to `cancelled` alone', async () => {
    const busy = await api.startBuild({ steps: 1, stepMs: 60_000 });
    await api.waitForEvent(busy, (event) => event.type === 'step');

    const waiting = await api.startBuild({ steps: 2, stepMs: 0 });
    const doomed = await api.startBuild({ steps: 2, stepMs: 0 });
    const queued = await api.state(waiting);
    expect(queued).toEqual(expect.objectContaining({ id: waiting, state: 'queued', attempt: 0, createdAt: expect.any(Number) }));
    expect(await api.poll(waiting)).toEqual({ events: [], next: expect.any(String), done: false });

    const cancel = await api.cancel(doomed);
    expect(cancel.status).toBe(202);
    expect(await cancel.json()).toEqual({ cancelled: true });
    expect(await api.state(doomed)).toEqual(expect.objectContaining({ state: 'cancelled', attempt: 0 }));
    expect(typesAndData((await api.pollAll(doomed)).events)).toEqual([{ type: 'cancelled', data: { reason: expect.any(String) } }]);
    await expectError(await api.cancel(doomed), 409);

    expect((await api.cancel(busy)).status).toBe(202);
    expect((await api.state(busy)).state).toBe('cancelled');
    const events = await api.waitForEnd(waiting);
    expect(typesAndData(events)).toEqual(expectedBuildEvents(2, 0, { completed: true }));
    expect(await api.state(waiting)).toEqual(expect.objectContaining({ state: 'completed', attempt: 1, createdAt: queued.createdAt }));
    // The cancelled queued build never ran.
    expect(typesAndData((await api.pollAll(doomed)).events)).toEqual([{ type: 'cancelled', data: { reason: expect.any(String) } }]);
  });
});

describe('retention (JOB_RETENTION_MS=1000)', () => {
  let server: ApiServer;
  let api: ApiClient;

  beforeAll(async () => {
    server = await startApiServer({ JOB_RETENTION_MS: '1000' });
    api = new ApiClient(server.baseUrl);
  });

  afterAll(() => server?.close());

  /** Expiry has no event to wait on: look every 25 ms, for at most 10 s, and return when the build became unknown. */
  async function goneAt(id: string): Promise<number> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const response = await api.fetch(`/builds/${id}`);
      await response.body?.cancel();
      if (response.status === 404) return Date.now();
      expect(response.status).toBe(200);
      await sleep(25);
    }
    throw new Error(`build ${id} still there after 10 s`);
  }

  it('a build replays after its end until retention has passed since the end, then is unknown (404) on every route', async () => {
    const quick = await api.startBuild({ steps: 1, stepMs: 0 });
    const quickEvents = await api.waitForEnd(quick);
    const slow = await api.startBuild({ steps: 1, stepMs: 1300 });
    expect((await api.pollAll(quick)).events).toEqual(quickEvents);
    expect((await api.state(quick)).state).toBe('completed');

    const quickGone = await goneAt(quick);
    expect(quickGone - quickEvents.at(-1)!.ts).toBeGreaterThanOrEqual(990);
    await expectError(await api.fetch(`/builds/${quick}/events?delivery=polling`), 404, /not found/i);
    await expectError(await api.fetch(`/builds/${quick}/events`), 404, /not found/i);
    await expectError(await api.fetch(`/builds/${quick}/events`, { headers: { Accept: 'text/event-stream' } }), 404, /not found/i);
    await expectError(await api.cancel(quick), 404, /not found/i);

    // Retention counts from the end, not from creation: the slow build outlives it while running, and after.
    const slowEvents = await api.waitForEnd(slow);
    expect(slowEvents.at(-1)!.ts - slowEvents[0].ts).toBeGreaterThanOrEqual(1_000);
    expect((await api.pollAll(slow)).events).toEqual(slowEvents);
    expect((await api.state(slow)).state).toBe('completed');
    expect((await goneAt(slow)) - slowEvents.at(-1)!.ts).toBeGreaterThanOrEqual(990);
  });
});

describe('shutdown', () => {
  it('closing the app ends open SSE and NDJSON streams of a running build at once (no terminal event: clients resume elsewhere)', async () => {
    const server = await startApiServer();
    let closed = false;
    try {
      const api = new ApiClient(server.baseUrl);
      const id = await api.startBuild({ steps: 1, stepMs: 60_000 });
      const sse = readSse(await api.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } }));
      const ndjson = readNdjson(await api.fetch(`/builds/${id}/events`));
      // Both streams are open and have delivered the first step.
      for (;;) {
        const item = (await sse.next()).value;
        if (item?.kind === 'event' && item.event === 'step') break;
      }
      for (;;) if ((await ndjson.next()).value?.type === 'step') break;

      const closing = Date.now();
      await server.close();
      closed = true;
      expect(Date.now() - closing).toBeLessThan(5_000);
      const rest: string[] = [];
      for await (const item of sse) if (item.kind === 'event') rest.push(item.event!);
      for await (const event of ndjson) rest.push(event.type);
      expect(rest).toEqual([]);
    } finally {
      if (!closed) await server.close();
    }
  });
});
