import { get } from 'node:http';
import { startApiServer, type ApiServer } from './support/api-server.js';
import {
  ApiClient,
  expectWellFormed,
  expectedBuildEvents,
  followWithEventSource,
  ndjsonEvents,
  readNdjson,
  readSse,
  sseEvents,
  typesAndData,
  type WireEvent,
} from './support/http-client.js';

/** A GET with no headers but Host (fetch always adds Accept). */
function rawGet(url: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

const withoutTs = (events: readonly WireEvent[]) => events.map(({ id, type, data }) => ({ id, type, data }));

describe('build events (polling, SSE, NDJSON)', () => {
  let server: ApiServer;
  let api: ApiClient;

  beforeAll(async () => {
    server = await startApiServer();
    api = new ApiClient(server.baseUrl);
  });

  afterAll(() => server?.close());

  describe('a 1000-step build with 10 tokens per step', () => {
    const STEPS = 1000;
    const TOKENS = 10;
    let jobId: string;
    /** The reference: every event, read by polling with the default limit. */
    let all: WireEvent[];
    let middle: WireEvent;
    let rest: WireEvent[];

    beforeAll(async () => {
      jobId = await api.startBuild({ steps: STEPS, stepMs: 0, tokensPerStep: TOKENS });
      await api.waitForEnd(jobId);
      const read = await api.pollAll(jobId);
      all = read.events;
      middle = all[5500];
      rest = all.slice(5501);
    });

    it('polling with the default limit pages through every event, complete and in order', async () => {
      expect(all).toHaveLength(1 + STEPS * (1 + TOKENS) + 1);
      expect(typesAndData(all)).toEqual(expectedBuildEvents(STEPS, TOKENS, { completed: true }));
      expectWellFormed(all);
      expect((await api.pollAll(jobId)).pages).toBe(12);
    });

    it.each([1000, 777, 500])('polling with limit=%i returns the same events in pages of at most that many', async (limit) => {
      const read = await api.pollAll(jobId, { limit });
      expect(read.pages).toBe(Math.ceil(all.length / limit));
      expect(read.events).toEqual(all);
    });

    it('polling: done and next around the terminal event', async () => {
      const [beforeLast, last, terminal] = all.slice(-3);
      expect(await api.poll(jobId, { after: beforeLast.id, limit: 1 })).toEqual({ events: [last], next: last.id, done: false });
      expect(await api.poll(jobId, { after: last.id, limit: 1 })).toEqual({ events: [terminal], next: terminal.id, done: true });
      expect(await api.poll(jobId, { after: beforeLast.id })).toEqual({ events: [last, terminal], next: terminal.id, done: true });
      // At the terminal event: nothing new, `next` stays, done; waitMs does not make it wait.
      const started = Date.now();
      expect(await api.poll(jobId, { after: terminal.id, waitMs: 20_000 })).toEqual({ events: [], next: terminal.id, done: true });
      expect(Date.now() - started).toBeLessThan(5_000);
      // Replay: reading from the start again gives the same first page.
      expect(await api.poll(jobId, { limit: 2 })).toEqual({ events: all.slice(0, 2), next: all[1].id, done: false });
      // An empty `after` means from the start.
      expect(await api.poll(jobId, { after: '', limit: 1 })).toEqual({ events: all.slice(0, 1), next: all[0].id, done: false });
    });

    it('SSE through EventSource: every event once, in order; the reconnect after the end gets 204 and stops', async () => {
      const run = await followWithEventSource(`${server.baseUrl}/builds/${jobId}/events`);
      expect(run.events).toEqual(withoutTs(all));
      expect(run.requests).toEqual([
        { lastEventId: undefined, status: 200 },
        { lastEventId: all.at(-1)!.id, status: 204 },
      ]);
      expect(run.errors).toEqual([undefined, 204]);
    });

    it('SSE on the wire: text/event-stream with a retry hint, then id/event/data per event', async () => {
      const response = await api.fetch(`/builds/${jobId}/events`, { headers: { Accept: 'text/event-stream' } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const items = [];
      for await (const item of readSse(response)) items.push(item);
      expect(items[0]).toEqual({ kind: 'retry', ms: expect.any(Number) });
      const events = items.filter((item) => item.kind === 'event');
      expect(events.map((item) => ({ id: item.id, type: item.event, data: JSON.parse(item.data) }))).toEqual(withoutTs(all));
      expect(items.filter((item) => item.kind === 'comment').every((item) => item.text === 'ping')).toBe(true);
    });

    it.each([
      ['Accept: */* (fetch default)', '*/*'],
      ['an empty Accept', ''],
      ['Accept: application/json', 'application/json'],
      ['Accept: application/x-ndjson', 'application/x-ndjson'],
      ['Accept: text/html', 'text/html'],
    ])('NDJSON with %s: one event object per line, all of them, then the end', async (_, accept) => {
      const response = await api.fetch(`/builds/${jobId}/events`, { headers: { Accept: accept } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
      expect(await ndjsonEvents(response)).toEqual(all);
    });

    it('NDJSON without any Accept header', async () => {
      const { status, headers, body } = await rawGet(`${server.baseUrl}/builds/${jobId}/events`);
      expect(status).toBe(200);
      expect(headers['content-type']).toMatch(/^application\/x-ndjson/);
      const lines = body.split('\n');
      expect(lines.pop()).toBe('');
      expect(lines.map((line) => JSON.parse(line))).toEqual(all);
    });

    it('NDJSON with delivery=streaming spelled out', async () => {
      const response = await api.fetch(`/builds/${jobId}/events?delivery=streaming`);
      expect(await ndjsonEvents(response)).toEqual(all);
    });

    describe('resuming from an event in the middle gets exactly the rest', () => {
      it('polling ?after=', async () => {
        expect((await api.pollAll(jobId, { after: middle.id })).events).toEqual(rest);
      });

      it('NDJSON ?after=', async () => {
        expect(await ndjsonEvents(await api.fetch(`/builds/${jobId}/events?after=${middle.id}`))).toEqual(rest);
      });

      it('SSE Last-Event-ID header', async () => {
        const response = await api.fetch(`/builds/${jobId}/events`, {
          headers: { Accept: 'text/event-stream', 'Last-Event-ID': middle.id },
        });
        expect(await sseEvents(response)).toEqual(withoutTs(rest));
      });

      it('SSE ?after=', async () => {
        const response = await api.fetch(`/builds/${jobId}/events?after=${middle.id}`, { headers: { Accept: 'text/event-stream' } });
        expect(await sseEvents(response)).toEqual(withoutTs(rest));
      });

      it('SSE: Last-Event-ID wins over ?after= (a browser reconnecting to a URL with after)', async () => {
        const response = await api.fetch(`/builds/${jobId}/events?after=${all[10].id}`, {
          headers: { Accept: 'text/event-stream', 'Last-Event-ID': middle.id },
        });
        expect(await sseEvents(response)).toEqual(withoutTs(rest));
      });

      it('EventSource sending Last-Event-ID on its first request', async () => {
        const run = await followWithEventSource(`${server.baseUrl}/builds/${jobId}/events`, { initialLastEventId: middle.id });
        expect(run.events).toEqual(withoutTs(rest));
        expect(run.requests.map((request) => request.status)).toEqual([200, 204]);
      });

      it('EventSource on ?after= reconnects with Last-Event-ID, not from the URL cursor again', async () => {
        const run = await followWithEventSource(`${server.baseUrl}/builds/${jobId}/events?after=${middle.id}`);
        expect(run.events).toEqual(withoutTs(rest));
        expect(run.requests).toEqual([
          { lastEventId: undefined, status: 200 },
          { lastEventId: all.at(-1)!.id, status: 204 },
        ]);
      });
    });

    it('SSE whose cursor is at the terminal event: 204 with no body (?after= or Last-Event-ID)', async () => {
      const terminal = all.at(-1)!.id;
      const byQuery = await api.fetch(`/builds/${jobId}/events?after=${terminal}`, { headers: { Accept: 'text/event-stream' } });
      expect(byQuery.status).toBe(204);
      expect(await byQuery.text()).toBe('');
      const byHeader = await api.fetch(`/builds/${jobId}/events`, { headers: { Accept: 'text/event-stream', 'Last-Event-ID': terminal } });
      expect(byHeader.status).toBe(204);
      expect(await byHeader.text()).toBe('');
    });

    it('NDJSON whose cursor is at the terminal event: 200 and an empty body, closed at once', async () => {
      const response = await api.fetch(`/builds/${jobId}/events?after=${all.at(-1)!.id}`);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('');
    });
  });

  describe('live builds', () => {
    it('NDJSON streams events while the build runs and closes right after the terminal event', async () => {
      const id = await api.startBuild({ steps: 5, stepMs: 100, tokensPerStep: 1 });
      const response = await api.fetch(`/builds/${id}/events`);
      const events: WireEvent[] = [];
      let firstSeenAt = 0;
      let stateAtFirstStep = '';
      for await (const event of readNdjson(response)) {
        events.push(event);
        if (event.type === 'step' && !firstSeenAt) {
          firstSeenAt = Date.now();
          stateAtFirstStep = (await api.state(id)).state;
        }
      }
      expect(typesAndData(events)).toEqual(expectedBuildEvents(5, 1, { completed: true }));
      expect(stateAtFirstStep).toBe('running');
      expect(firstSeenAt).toBeLessThan(events.at(-1)!.ts);
      expect(events).toEqual((await api.pollAll(id)).events);
    });

    it('SSE streams events while the build runs, then closes', async () => {
      const id = await api.startBuild({ steps: 4, stepMs: 100, tokensPerStep: 2 });
      const response = await api.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } });
      const events: Array<Omit<WireEvent, 'ts'>> = [];
      let firstSeenAt = 0;
      for await (const item of readSse(response)) {
        if (item.kind !== 'event') continue;
        firstSeenAt ||= Date.now();
        events.push({ id: item.id!, type: item.event!, data: JSON.parse(item.data) });
      }
      const polled = (await api.pollAll(id)).events;
      expect(events).toEqual(withoutTs(polled));
      expect(typesAndData(events)).toEqual(expectedBuildEvents(4, 2, { completed: true }));
      expect(firstSeenAt).toBeLessThan(polled.at(-1)!.ts);
    });

    it('EventSource resumes a dropped connection with Last-Event-ID: no event lost, none twice', async () => {
      const id = await api.startBuild({ steps: 20, stepMs: 80, tokensPerStep: 3 });
      const run = await followWithEventSource(`${server.baseUrl}/builds/${id}/events`, { cutFirstResponseAfterBytes: 400 });
      const polled = (await api.pollAll(id)).events;
      expect(typesAndData(polled)).toEqual(expectedBuildEvents(20, 3, { completed: true }));
      expect(run.events).toEqual(withoutTs(polled));
      expect(run.requests.length).toBeGreaterThanOrEqual(3);
      expect(run.requests[0]).toEqual({ lastEventId: undefined, status: 200 });
      // The reconnect after the cut resumed from an event in the middle.
      const resumedFrom = run.requests[1].lastEventId;
      expect(polled.findIndex((event) => event.id === resumedFrom)).toBeGreaterThan(0);
      expect(polled.findIndex((event) => event.id === resumedFrom)).toBeLessThan(polled.length - 1);
      expect(run.requests.at(-1)).toEqual({ lastEventId: polled.at(-1)!.id, status: 204 });
    });

    it('two readers of one running build get the same events', async () => {
      const id = await api.startBuild({ steps: 3, stepMs: 60, tokensPerStep: 2 });
      const [ndjson, sse] = await Promise.all([
        api.fetch(`/builds/${id}/events`).then(ndjsonEvents),
        api.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } }).then(sseEvents),
      ]);
      expect(typesAndData(ndjson)).toEqual(expectedBuildEvents(3, 2, { completed: true }));
      expect(sse).toEqual(withoutTs(ndjson));
    });
  });

  describe('POST /builds?delivery=direct', () => {
    it('streams the new build as NDJSON with its id in X-Job-Id and closes after the terminal event', async () => {
      const response = await api.postBuild({ steps: 3, stepMs: 0, tokensPerStep: 2 }, '?delivery=direct');
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
      const id = response.headers.get('x-job-id');
      expect(id).toEqual(expect.any(String));
      const events = await ndjsonEvents(response);
      expect(typesAndData(events)).toEqual(expectedBuildEvents(3, 2, { completed: true }));
      expect((await api.state(id!)).state).toBe('completed');
      expect((await api.pollAll(id!)).events).toEqual(events);
    });

    it('streams a running build live', async () => {
      const response = await api.postBuild({ steps: 4, stepMs: 100 }, '?delivery=direct');
      const id = response.headers.get('x-job-id')!;
      const events: WireEvent[] = [];
      let stateAtFirstStep = '';
      for await (const event of readNdjson(response)) {
        events.push(event);
        if (event.type === 'step' && !stateAtFirstStep) stateAtFirstStep = (await api.state(id)).state;
      }
      expect(stateAtFirstStep).toBe('running');
      expect(typesAndData(events)).toEqual(expectedBuildEvents(4, 0, { completed: true }));
    });

    it('ends with the failed event of a failing build', async () => {
      const response = await api.postBuild({ steps: 3, stepMs: 0, failAtStep: 2 }, '?delivery=direct');
      expect(response.status).toBe(200);
      const events = await ndjsonEvents(response);
      expect(typesAndData(events)).toEqual(expectedBuildEvents(3, 0, { failAtStep: 2 }));
    });

    it('a client that leaves before the terminal event abandons the build: it is cancelled within one step', async () => {
      const abort = new AbortController();
      const response = await api.fetch('/builds?delivery=direct', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ steps: 20, stepMs: 200 }),
        signal: abort.signal,
      });
      const id = response.headers.get('x-job-id')!;
      for await (const event of readNdjson(response)) {
        if (event.type === 'step') break; // leaves the stream: the reader is cancelled
      }
      abort.abort();
      const events = await api.waitForEnd(id);
      expect(events.at(-1)).toMatchObject({ type: 'cancelled', data: { reason: 'client disconnected' } });
      expect(events.filter((event) => event.type === 'step').length).toBeLessThanOrEqual(3);
      expect((await api.state(id)).state).toBe('cancelled');
    });
  });

  describe('long-polling', () => {
    it('answers as soon as the next event arrives, with that event, long before waitMs', async () => {
      const id = await api.startBuild({ steps: 2, stepMs: 1500 });
      const upToStep1 = await api.waitForEvent(id, (event) => event.type === 'step');
      const after = upToStep1.at(-1)!.id;
      const asked = Date.now();
      const page = await api.poll(id, { after, waitMs: 20_000 });
      const answered = Date.now();
      expect(page).toEqual({
        events: [{ id: expect.any(String), type: 'step', data: { index: 2, total: 2 }, ts: expect.any(Number) }],
        next: page.events[0]?.id,
        done: false,
      });
      // The event did not exist when the poll was sent: the server waited for it, then answered at once.
      expect(page.events[0].ts).toBeGreaterThanOrEqual(asked);
      expect(answered - page.events[0].ts).toBeLessThan(1_000);
      expect(answered - asked).toBeLessThan(10_000);
      expect((await api.cancel(id)).status).toBe(202);
    });

    it('answers an empty page with done:false and next unchanged after waitMs when nothing happens', async () => {
      const id = await api.startBuild({ steps: 1, stepMs: 60_000 });
      const after = (await api.waitForEvent(id, (event) => event.type === 'step')).at(-1)!.id;
      const asked = Date.now();
      const page = await api.poll(id, { after, waitMs: 300 });
      const elapsed = Date.now() - asked;
      expect(page).toEqual({ events: [], next: after, done: false });
      expect(elapsed).toBeGreaterThanOrEqual(290);
      expect(elapsed).toBeLessThan(5_000);
      expect((await api.cancel(id)).status).toBe(202);
    });

    it('a waiting poll wakes with the cancelled event, done:true', async () => {
      const id = await api.startBuild({ steps: 1, stepMs: 60_000 });
      const after = (await api.waitForEvent(id, (event) => event.type === 'step')).at(-1)!.id;
      const asked = Date.now();
      const waiting = api.poll(id, { after, waitMs: 20_000 });
      expect((await api.cancel(id)).status).toBe(202);
      const page = await waiting;
      expect(page).toEqual({
        events: [{ id: expect.any(String), type: 'cancelled', data: { reason: expect.any(String) }, ts: expect.any(Number) }],
        next: page.events[0]?.id,
        done: true,
      });
      expect(Date.now() - asked).toBeLessThan(10_000);
    });

    it('waitMs does not delay an answer when events are already there', async () => {
      const id = await api.startBuild({ steps: 2, stepMs: 0 });
      await api.waitForEnd(id);
      const asked = Date.now();
      const page = await api.poll(id, { waitMs: 20_000 });
      expect(Date.now() - asked).toBeLessThan(5_000);
      expect(typesAndData(page.events)).toEqual(expectedBuildEvents(2, 0, { completed: true }));
      expect(page.done).toBe(true);
    });
  });

  describe('SSE heartbeats (SSE_HEARTBEAT_MS=100)', () => {
    it('an idle SSE stream gets `: ping` comments; NDJSON over the same idle time has only event lines', async () => {
      const id = await api.startBuild({ steps: 1, stepMs: 60_000 });
      const ndjson = api.fetch(`/builds/${id}/events`).then(ndjsonEvents);
      const response = await api.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } });
      const types: string[] = [];
      let pingsWhileIdle = 0;
      for await (const item of readSse(response)) {
        if (item.kind === 'event') types.push(item.event!);
        if (item.kind === 'comment') {
          expect(item.text).toBe('ping');
          if (types.includes('step')) pingsWhileIdle++;
          // Enough pings seen: end the build, which must end the stream.
          if (pingsWhileIdle === 3) expect((await api.cancel(id)).status).toBe(202);
        }
      }
      expect(pingsWhileIdle).toBeGreaterThanOrEqual(3);
      expect(types).toEqual(['started', 'step', 'cancelled']);
      expect((await ndjson).map((event) => event.type)).toEqual(['started', 'step', 'cancelled']);
    });
  });
});
