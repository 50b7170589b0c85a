import { startApiServer, type ApiServer } from './support/api-server.js';
import { ApiClient, expectError, expectedBuildEvents, followWithEventSource, ndjsonEvents, typesAndData } from './support/http-client.js';

describe('tokens and ownership (AUTH_TOKENS=alice:tokenA,bob:tokenB)', () => {
  let server: ApiServer;
  let alice: ApiClient;
  let bob: ApiClient;
  let anonymous: ApiClient;
  /** Alice's build, running for the whole file (steps of a minute). */
  let running: string;
  /** Alice's finished build. */
  let finished: string;

  beforeAll(async () => {
    server = await startApiServer({ AUTH_TOKENS: 'alice:tokenA,bob:tokenB' });
    alice = new ApiClient(server.baseUrl, 'tokenA');
    bob = new ApiClient(server.baseUrl, 'tokenB');
    anonymous = new ApiClient(server.baseUrl);
    running = await alice.startBuild({ steps: 100, stepMs: 60_000 });
    await alice.waitForEvent(running, (event) => event.type === 'step');
    finished = await alice.startBuild({ steps: 2, stepMs: 0, tokensPerStep: 1 });
    await alice.waitForEnd(finished);
  });

  afterAll(async () => {
    if (running) await alice.cancel(running);
    await server?.close();
  });

  afterEach(async () => {
    // Nothing an intruder did changed Alice's builds.
    expect((await alice.state(running)).state).toBe('running');
    expect(typesAndData((await alice.pollAll(finished)).events)).toEqual(expectedBuildEvents(2, 1, { completed: true }));
  });

  it('GET /health needs no token (and ignores a bad one)', async () => {
    for (const client of [anonymous, new ApiClient(server.baseUrl, 'wrong')]) {
      const response = await client.fetch('/health');
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: 'ok', backend: 'memory', details: { circuitBreakers: [] } });
    }
  });

  const routes: Array<[string, (client: ApiClient) => Promise<Response>]> = [
    ['POST /builds', (client) => client.postBuild({ steps: 1, stepMs: 0 })],
    ['POST /builds (no body)', (client) => client.postBuild()],
    ['POST /builds?delivery=direct', (client) => client.postBuild({ steps: 1, stepMs: 0 }, '?delivery=direct')],
    ['GET /builds/:id', (client) => client.fetch(`/builds/${running}`)],
    ['GET /builds/:id/events?delivery=polling', (client) => client.fetch(`/builds/${finished}/events?delivery=polling`)],
    ['GET /builds/:id/events as SSE', (client) => client.fetch(`/builds/${finished}/events`, { headers: { Accept: 'text/event-stream' } })],
    ['GET /builds/:id/events as NDJSON', (client) => client.fetch(`/builds/${finished}/events`)],
    ['POST /builds/:id/cancel', (client) => client.cancel(running)],
    ['GET /builds/:id of an unknown id', (client) => client.fetch('/builds/no-such-build')],
  ];

  describe.each([
    ['no token', () => anonymous],
    ['a wrong token', () => new ApiClient(server.baseUrl, 'tokenC')],
    ['a token that only starts like a valid one', () => new ApiClient(server.baseUrl, 'tokenAA')],
    ['an empty bearer', () => new ApiClient(server.baseUrl, '')],
  ])('401 with a JSON message for %s', (_, client) => {
    it.each(routes)('%s', async (_, call) => {
      await expectError(await call(client()), 401, /token/i);
    });
  });

  describe('401 comes before any judgement of the body', () => {
    const bodies: Array<[string, RequestInit]> = [
      ['malformed JSON', { headers: { 'Content-Type': 'application/json' }, body: '{"steps":' }],
      ['invalid input', { headers: { 'Content-Type': 'application/json' }, body: '{"steps":0}' }],
      ['a body over 256 KiB', { headers: { 'Content-Type': 'application/json' }, body: `{"a":"${'x'.repeat(300_000)}"}` }],
      ['a text/plain body', { headers: { 'Content-Type': 'text/plain' }, body: '{}' }],
    ];

    it.each(bodies)('POST /builds with %s and no token: 401', async (_, init) => {
      await expectError(await anonymous.fetch('/builds', { method: 'POST', ...init }), 401, /token/i);
    });

    it.each(bodies)('POST /builds/:id/cancel with %s and a wrong token: 401', async (_, init) => {
      const response = await anonymous.fetch(`/builds/${running}/cancel`, {
        method: 'POST',
        ...init,
        headers: { ...init.headers, Authorization: 'Bearer nope' },
      });
      await expectError(response, 401, /token/i);
    });

    it.each([
      [bodies[0], 400],
      [bodies[1], 400],
      [bodies[2], 413],
      [bodies[3], 415],
    ] as const)('with a valid token the same body is judged: %j', async ([, init], status) => {
      await expectError(await alice.fetch('/builds', { method: 'POST', ...init }), status);
    });
  });

  it.each(routes)('401 for a non-Bearer Authorization header: %s', async (_, call) => {
    const basic = new ApiClient(server.baseUrl);
    const original = basic.fetch.bind(basic);
    basic.fetch = (path, init = {}) => original(path, { ...init, headers: { ...init.headers, Authorization: 'Basic YWxpY2U6dG9rZW5B' } });
    await expectError(await call(basic), 401, /token/i);
  });

  it('?access_token= is accepted too (what a browser EventSource can send), and checked the same way', async () => {
    const ok = await anonymous.fetch(`/builds/${finished}?access_token=tokenA`);
    expect(ok.status).toBe(200);
    await expectError(await anonymous.fetch(`/builds/${finished}?access_token=wrong`), 401, /token/i);
    await expectError(await anonymous.fetch(`/builds/${finished}?access_token=tokenB`), 404, /not found/i);
  });

  describe("Bob gets 404 for Alice's builds, exactly as for an unknown id", () => {
    it.each([
      ['GET /builds/:id', (id: string) => bob.fetch(`/builds/${id}`)],
      ['GET /builds/:id/events?delivery=polling', (id: string) => bob.fetch(`/builds/${id}/events?delivery=polling`)],
      [
        'GET /builds/:id/events?delivery=polling&waitMs=20000',
        (id: string) => bob.fetch(`/builds/${id}/events?delivery=polling&waitMs=20000`),
      ],
      ['GET /builds/:id/events as SSE', (id: string) => bob.fetch(`/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } })],
      ['GET /builds/:id/events as NDJSON', (id: string) => bob.fetch(`/builds/${id}/events`)],
      [
        'GET /builds/:id/events?after= as SSE',
        (id: string) => bob.fetch(`/builds/${id}/events?after=1`, { headers: { Accept: 'text/event-stream' } }),
      ],
      ['POST /builds/:id/cancel', (id: string) => bob.cancel(id)],
    ])('%s', async (_, call) => {
      for (const id of [running, finished]) {
        const asked = Date.now();
        const body = await expectError(await call(id), 404, /not found/i);
        expect(Date.now() - asked).toBeLessThan(5_000);
        const unknown = await expectError(await call('no-such-build'), 404);
        expect(Object.keys(body).sort()).toEqual(Object.keys(unknown).sort());
      }
    });

    it('EventSource as Bob fails with 404 and does not reconnect', async () => {
      await expect(followWithEventSource(`${server.baseUrl}/builds/${finished}/events?access_token=tokenB`)).rejects.toThrow(/404/);
    });
  });

  describe('Alice reads her builds by every delivery', () => {
    it('state, polling, NDJSON, SSE (header and access_token), direct', async () => {
      expect((await alice.state(finished)).state).toBe('completed');
      const polled = (await alice.pollAll(finished)).events;
      expect(typesAndData(polled)).toEqual(expectedBuildEvents(2, 1, { completed: true }));
      expect(await ndjsonEvents(await alice.fetch(`/builds/${finished}/events`))).toEqual(polled);
      const expected = polled.map(({ id, type, data }) => ({ id, type, data }));
      const withHeader = await followWithEventSource(`${server.baseUrl}/builds/${finished}/events`, {
        headers: { Authorization: 'Bearer tokenA' },
      });
      expect(withHeader.events).toEqual(expected);
      const withQuery = await followWithEventSource(`${server.baseUrl}/builds/${finished}/events?access_token=tokenA`);
      expect(withQuery.events).toEqual(expected);
      expect(withQuery.requests.map((request) => request.status)).toEqual([200, 204]);

      const direct = await alice.postBuild({ steps: 1, stepMs: 0 }, '?delivery=direct');
      expect(direct.status).toBe(200);
      const id = direct.headers.get('x-job-id')!;
      expect(typesAndData(await ndjsonEvents(direct))).toEqual(expectedBuildEvents(1, 0, { completed: true }));
      // The direct build is Alice's: Bob cannot see it.
      await expectError(await bob.fetch(`/builds/${id}`), 404);
    });

    it("Bob's own builds are his; Alice cannot cancel them", async () => {
      const id = await bob.startBuild({ steps: 1, stepMs: 60_000 });
      await expectError(await alice.cancel(id), 404);
      await expectError(await alice.fetch(`/builds/${id}`), 404);
      expect((await bob.state(id)).state).not.toBe('cancelled');
      expect((await bob.cancel(id)).status).toBe(202);
      expect((await bob.state(id)).state).toBe('cancelled');
    });
  });
});
