import { startApiServer, type ApiServer } from './support/api-server.js';
import { ApiClient, expectError, expectedBuildEvents, typesAndData, type WireEvent } from './support/http-client.js';

const MAX_BODY_BYTES = 256 * 1024;

/** A JSON object of exactly `bytes` bytes (an unknown field padded with `x`). */
function jsonOfSize(bytes: number): string {
  const head = '{"padding":"';
  const tail = '"}';
  return head + 'x'.repeat(bytes - head.length - tail.length) + tail;
}

describe('bad input: 4xx with a JSON message, and nothing else disturbed', () => {
  let server: ApiServer;
  let api: ApiClient;
  /** A build that ended before the bad requests, and its events. */
  let finished: string;
  let finishedEvents: WireEvent[];
  /** A build that runs through all of them (steps of a minute). */
  let running: string;
  let runningEvents: WireEvent[];

  beforeAll(async () => {
    server = await startApiServer();
    api = new ApiClient(server.baseUrl);
    finished = await api.startBuild({ steps: 3, stepMs: 0, tokensPerStep: 2 });
    finishedEvents = await api.waitForEnd(finished);
    expect(typesAndData(finishedEvents)).toEqual(expectedBuildEvents(3, 2, { completed: true }));
    running = await api.startBuild({ steps: 100, stepMs: 60_000 });
    runningEvents = await api.waitForEvent(running, (event) => event.type === 'step');
  });

  afterAll(async () => {
    if (running) await api.cancel(running);
    await server?.close();
  });

  afterEach(async () => {
    expect((await api.state(finished)).state).toBe('completed');
    expect((await api.pollAll(finished)).events).toEqual(finishedEvents);
    expect((await api.state(running)).state).toBe('running');
    expect(await api.poll(running)).toEqual({ events: runningEvents, next: runningEvents.at(-1)!.id, done: false });
  });

  const postJson = (body: string, query = '') =>
    api.fetch(`/builds${query}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });

  describe('POST /builds body: 400 naming the problem', () => {
    it.each([
      ['steps as a string', '{"steps":"5"}', /steps must be a number/],
      ['steps as a boolean', '{"steps":true}', /steps must be a number/],
      ['steps null', '{"steps":null}', /steps must be a number/],
      ['steps as an object', '{"steps":{"n":1}}', /steps must be a number/],
      ['steps not an integer', '{"steps":1.5}', /steps must be an integer/],
      ['steps 0', '{"steps":0}', /steps must be at least 1/],
      ['steps -1', '{"steps":-1}', /steps must be at least 1/],
      ['steps 10001', '{"steps":10001}', /steps must be at most 10000/],
      ['steps overflowing to Infinity', '{"steps":1e400}', /steps/],
      ['stepMs as a string', '{"stepMs":"100"}', /stepMs must be a number/],
      ['stepMs not an integer', '{"stepMs":2.5}', /stepMs must be an integer/],
      ['stepMs -1', '{"stepMs":-1}', /stepMs must be at least 0/],
      ['stepMs 60001', '{"stepMs":60001}', /stepMs must be at most 60000/],
      ['tokensPerStep as an array', '{"tokensPerStep":[1]}', /tokensPerStep must be a number/],
      ['tokensPerStep not an integer', '{"tokensPerStep":0.5}', /tokensPerStep must be an integer/],
      ['tokensPerStep -1', '{"tokensPerStep":-1}', /tokensPerStep must be at least 0/],
      ['tokensPerStep 1001', '{"tokensPerStep":1001}', /tokensPerStep must be at most 1000/],
      ['failAtStep as a string', '{"failAtStep":"1"}', /failAtStep must be a number/],
      ['failAtStep not an integer', '{"steps":3,"failAtStep":1.5}', /failAtStep must be an integer/],
      ['failAtStep 0', '{"failAtStep":0}', /failAtStep must be at least 1/],
      ['failAtStep over the default 5 steps', '{"failAtStep":6}', /failAtStep must not be greater than steps/],
      ['failAtStep over steps', '{"steps":3,"failAtStep":4}', /failAtStep must not be greater than steps/],
      ['abandonAfterMs 999', '{"abandonAfterMs":999}', /abandonAfterMs must be at least 1000/],
      ['abandonAfterMs 3600001', '{"abandonAfterMs":3600001}', /abandonAfterMs must be at most 3600000/],
      ['abandonAfterMs as a string', '{"abandonAfterMs":"2000"}', /abandonAfterMs must be a number/],
      ['an unknown field', '{"foo":1}', /unknown field.*foo/],
      ['an unknown field beside valid ones', '{"steps":2,"stepMs":0,"priority":1}', /unknown field.*priority/],
      ['a __proto__ field', '{"__proto__":{"steps":1}}', /unknown field.*__proto__/],
      ['several problems at once', '{"steps":0,"stepMs":-1}', /steps must be at least 1.*stepMs must be at least 0/],
      ['an array', '[]', /object/],
      ['an array of an object', '[{"steps":1}]', /object/],
      ['a string', '"build"', /object/],
      ['a number', '42', /object/],
      ['a boolean', 'true', /object/],
    ])('%s: %s', async (_, body, message) => {
      await expectError(await postJson(body), 400, message);
      await expectError(await postJson(body, '?delivery=direct'), 400, message);
    });

    it.each([
      ['truncated', '{"steps":'],
      ['unquoted keys', '{steps:1}'],
      ['single quotes', "{'steps':1}"],
      ['trailing comma', '{"steps":1,}'],
      ['two documents', '{"steps":1}{"steps":2}'],
      ['not JSON at all', 'steps=1'],
    ])('malformed JSON (%s): 400', async (_, body) => {
      await expectError(await postJson(body), 400, /JSON/);
      await expectError(await postJson(body, '?delivery=direct'), 400, /JSON/);
    });
  });

  describe('POST /builds body size (limit 256 KiB)', () => {
    it('exactly 256 KiB is read (then refused for its unknown field, 400)', async () => {
      await expectError(await postJson(jsonOfSize(MAX_BODY_BYTES)), 400, /unknown field.*padding/);
    });

    it('one byte over 256 KiB: 413', async () => {
      await expectError(await postJson(jsonOfSize(MAX_BODY_BYTES + 1)), 413, /262144|256/);
    });

    it('1 MiB: 413', async () => {
      await expectError(await postJson(jsonOfSize(1024 * 1024)), 413, /262144|256/);
    });

    it('over 256 KiB sent chunked, without Content-Length: 413', async () => {
      const chunk = new TextEncoder().encode(jsonOfSize(MAX_BODY_BYTES + 1));
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(chunk.subarray(0, 100_000));
          controller.enqueue(chunk.subarray(100_000));
          controller.close();
        },
      });
      const response = await api.fetch('/builds', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
        duplex: 'half',
      } as RequestInit);
      await expectError(response, 413, /262144|256/);
    });

    it('over 256 KiB with a non-JSON content type: 413', async () => {
      const response = await api.fetch('/builds', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'x'.repeat(300_000) });
      await expectError(response, 413, /262144|256/);
    });
  });

  describe('POST /builds with a body that is not JSON: 415', () => {
    it.each([
      ['text/plain', '{"steps":1}'],
      ['application/x-www-form-urlencoded', 'steps=1'],
      ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="steps"\r\n\r\n1\r\n--x--\r\n'],
      ['application/octet-stream', '{"steps":1}'],
      ['application/json; charset=latin1', '{"steps":1}'],
    ])('Content-Type: %s', async (type, body) => {
      const response = await api.fetch('/builds', { method: 'POST', headers: { 'Content-Type': type }, body });
      await expectError(response, 415, /JSON|UTF-8/);
    });

    it('a body without any Content-Type', async () => {
      const response = await api.fetch('/builds', { method: 'POST', body: new Blob(['{"steps":1}']) });
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
      await expectError(response, 415, /JSON/);
    });
  });

  describe('delivery', () => {
    it.each(['polling', 'streaming', '', 'DIRECT', 'direct ', 'sse'])('POST /builds?delivery=%s: 400', async (value) => {
      await expectError(await postJson('{"steps":1,"stepMs":0}', `?delivery=${encodeURIComponent(value)}`), 400, /delivery/);
    });

    it('POST /builds with delivery given twice: 400', async () => {
      await expectError(await postJson('{"steps":1,"stepMs":0}', '?delivery=direct&delivery=direct'), 400, /delivery/);
    });

    it.each(['direct', 'sse', 'ndjson', '', 'POLLING', 'stream'])('GET /builds/:id/events?delivery=%s: 400', async (value) => {
      await expectError(await api.fetch(`/builds/${finished}/events?delivery=${encodeURIComponent(value)}`), 400, /delivery/);
      await expectError(
        await api.fetch(`/builds/${finished}/events?delivery=${encodeURIComponent(value)}`, { headers: { Accept: 'text/event-stream' } }),
        400,
        /delivery/,
      );
    });

    it('GET /builds/:id/events with delivery given twice: 400', async () => {
      await expectError(await api.fetch(`/builds/${finished}/events?delivery=polling&delivery=polling`), 400, /delivery/);
    });
  });

  describe('polling parameters', () => {
    it.each(['0', '1001', 'abc', '1.5', '-1', '', '1e3', '0x10', ' 5', '99999999999'])('limit=%s: 400', async (value) => {
      await expectError(await api.fetch(`/builds/${finished}/events?delivery=polling&limit=${encodeURIComponent(value)}`), 400, /limit/);
    });

    it('limit given twice: 400', async () => {
      await expectError(await api.fetch(`/builds/${finished}/events?delivery=polling&limit=1&limit=2`), 400, /limit/);
    });

    it.each(['-1', '30001', 'abc', '1.5', '', '1e3', '99999999999'])('waitMs=%s: 400, at once', async (value) => {
      const asked = Date.now();
      await expectError(await api.fetch(`/builds/${running}/events?delivery=polling&waitMs=${encodeURIComponent(value)}`), 400, /waitMs/);
      expect(Date.now() - asked).toBeLessThan(5_000);
    });

    it('waitMs given twice: 400', async () => {
      await expectError(await api.fetch(`/builds/${finished}/events?delivery=polling&waitMs=1&waitMs=2`), 400, /waitMs/);
    });

    it.each([
      ['1', 1],
      ['1000', 1000],
    ])('limit=%s is accepted', async (value, count) => {
      const response = await api.fetch(`/builds/${finished}/events?delivery=polling&limit=${value}`);
      expect(response.status).toBe(200);
      expect(((await response.json()) as { events: unknown[] }).events).toHaveLength(Math.min(count, finishedEvents.length));
    });

    it.each(['0', '30000'])('waitMs=%s is accepted', async (value) => {
      const response = await api.fetch(`/builds/${finished}/events?delivery=polling&waitMs=${value}`);
      expect(response.status).toBe(200);
    });
  });

  describe('cursors', () => {
    const badCursors = ['abc', '-1', '1.5', 'not-a-cursor', 'x'.repeat(201), '../1'];

    it.each(badCursors)('polling ?after=%s: 400', async (cursor) => {
      await expectError(
        await api.fetch(`/builds/${finished}/events?delivery=polling&after=${encodeURIComponent(cursor)}`),
        400,
        /cursor|after/i,
      );
    });

    it.each(badCursors)('NDJSON ?after=%s: 400', async (cursor) => {
      await expectError(await api.fetch(`/builds/${finished}/events?after=${encodeURIComponent(cursor)}`), 400, /cursor|after/i);
    });

    it.each(badCursors)('SSE ?after=%s: 400', async (cursor) => {
      const response = await api.fetch(`/builds/${finished}/events?after=${encodeURIComponent(cursor)}`, {
        headers: { Accept: 'text/event-stream' },
      });
      await expectError(response, 400, /cursor|after/i);
    });

    it.each(badCursors)('SSE Last-Event-ID: %s: 400', async (cursor) => {
      const response = await api.fetch(`/builds/${finished}/events`, { headers: { Accept: 'text/event-stream', 'Last-Event-ID': cursor } });
      await expectError(response, 400, /cursor|after/i);
    });

    it.each([
      ['polling', '?delivery=polling&', {}],
      ['NDJSON', '?', {}],
      ['SSE', '?', { Accept: 'text/event-stream' }],
    ])('%s with after given twice: 400', async (_, prefix, headers) => {
      await expectError(await api.fetch(`/builds/${finished}/events${prefix}after=1&after=2`, { headers }), 400, /after/);
    });

    it('a bad cursor on a running build answers at once (polling with waitMs, and streams)', async () => {
      const asked = Date.now();
      await expectError(await api.fetch(`/builds/${running}/events?delivery=polling&waitMs=20000&after=abc`), 400, /cursor/i);
      await expectError(await api.fetch(`/builds/${running}/events?after=abc`), 400, /cursor/i);
      await expectError(
        await api.fetch(`/builds/${running}/events?after=abc`, { headers: { Accept: 'text/event-stream' } }),
        400,
        /cursor/i,
      );
      expect(Date.now() - asked).toBeLessThan(5_000);
    });
  });
});
