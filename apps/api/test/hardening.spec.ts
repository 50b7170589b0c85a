import type { LoggerService } from '@nestjs/common';
import { Redis } from 'ioredis';
import { RedisMonitor } from '../../../test/support/redis-monitor.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { startApiServer, type ApiServer } from './support/api-server.js';
import { ApiClient, expectError, isTerminal, ndjsonEvents, readLines, type WireEvent } from './support/http-client.js';
import { collect, openSocket, parseRawResponse, rawExchange, type RawExchange } from './support/raw-http.js';
import { RedisKeys } from 'nestjs-job-streams';

const TOKENS = 'alice:tokenA-3f9c1e,bob:tokenB-77d2aa';
const ALICE_TOKEN = 'tokenA-3f9c1e';
const BOB_TOKEN = 'tokenB-77d2aa';

/** Every line any logger of the app wrote. */
class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  private record = (...parts: unknown[]): void => {
    this.lines.push(parts.map((part) => (part instanceof Error ? `${part.message} ${part.stack}` : String(part))).join(' '));
  };
  log = this.record;
  error = this.record;
  warn = this.record;
  debug = this.record;
  verbose = this.record;
  fatal = this.record;
}

/** Asserts a raw answer is the API's JSON error with `status`, closed by the server. */
function expectRawJsonError(exchange: RawExchange, status: number): Record<string, unknown> {
  expect(exchange.closedByServer).toBe(true);
  const { status: actual, headers, body } = parseRawResponse(exchange.text);
  expect(actual).toBe(status);
  expect(headers.get('content-type')).toMatch(/^application\/json/);
  const json = JSON.parse(body) as Record<string, unknown>;
  expect(json).toEqual({ statusCode: status, error: expect.any(String), message: expect.any(String) });
  return json;
}

describe('no secret is echoed back (1)', () => {
  let server: ApiServer;
  let alice: ApiClient;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    server = await startApiServer({ AUTH_TOKENS: TOKENS }, { logger });
    alice = new ApiClient(server.baseUrl, ALICE_TOKEN);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('unknown routes and methods, bad input and refused tokens name the method and path only, in answers and in logs', async () => {
    const id = await alice.startBuild({ steps: 1, stepMs: 0 });
    await alice.waitForEnd(id);
    const secret = `access_token=${ALICE_TOKEN}`;
    const requests: Array<[method: string, path: string, status: number, message?: string]> = [
      ['GET', `/nope?${secret}`, 404, 'Cannot GET /nope'],
      ['GET', `/builds/${id}/events/more?${secret}&after=1`, 404, `Cannot GET /builds/${id}/events/more`],
      ['DELETE', `/builds/${id}?${secret}`, 404, `Cannot DELETE /builds/${id}`],
      ['PUT', `/builds?${secret}`, 404, 'Cannot PUT /builds'],
      ['PATCH', `/health?${secret}`, 404, 'Cannot PATCH /health'],
      ['GET', `/unknown/${'x'.repeat(5000)}?${secret}`, 404],
      ['GET', `/builds/${id}/events?delivery=polling&after=nope&${secret}`, 400],
      ['GET', `/builds/not-a-job?${secret}`, 404],
      ['POST', `/builds?${secret}`, 400],
      ['GET', `/builds/${id}?access_token=${ALICE_TOKEN}x`, 401],
      ['GET', `/builds/${id}?access_token=${BOB_TOKEN}`, 404],
    ];
    for (const [method, path, status, message] of requests) {
      const response = await fetch(`${server.baseUrl}${path}`, {
        method,
        ...(method === 'POST' ? { headers: { 'Content-Type': 'application/json' }, body: '{"steps":' } : {}),
      });
      const text = await response.text();
      expect({ method, path: path.slice(0, 80), status: response.status }).toEqual({ method, path: path.slice(0, 80), status });
      expect(text).not.toContain(ALICE_TOKEN);
      expect(text).not.toContain(BOB_TOKEN);
      const body = JSON.parse(text) as { statusCode: number; error: string; message: string };
      expect(body).toMatchObject({ statusCode: status, error: expect.any(String), message: expect.any(String) });
      if (message) expect(body.message).toBe(message);
      expect(body.message.length).toBeLessThan(400);
    }
    expect(logger.lines.length).toBeGreaterThan(0); // the logger is the app's: it saw its start-up
    for (const line of logger.lines) {
      expect(line).not.toContain(ALICE_TOKEN);
      expect(line).not.toContain(BOB_TOKEN);
    }
  });
});

describe.each(['memory', 'bullmq'] as const)('event streams resumed at or past the end never hang (2, %s)', (backend) => {
  let redis: RedisServer | undefined;
  let server: ApiServer;
  let api: ApiClient;

  beforeAll(async () => {
    if (backend === 'bullmq') redis = await RedisServer.start();
    server = await startApiServer({
      JOB_QUEUE_BACKEND: backend,
      JOB_QUEUE_PREFIX: 'hardening',
      ...(redis ? { REDIS_URL: redis.url } : {}),
    });
    api = new ApiClient(server.baseUrl);
  });

  afterAll(async () => {
    await server?.close();
    await redis?.destroy();
  });

  it('a cursor this job never issued, beyond its last event, is 400 on every delivery, for running and ended jobs alike', async () => {
    const running = await api.startBuild({ steps: 100, stepMs: 60_000 });
    const runningEvents = await api.waitForEvent(running, (event) => event.type === 'step');
    const ended = await api.startBuild({ steps: 1, stepMs: 0 });
    const endedEvents = await api.waitForEnd(ended);
    // A later job with more events: its last id lies beyond the end of both jobs, on either backend.
    const later = await api.startBuild({ steps: 3, stepMs: 0, tokensPerStep: 2 });
    const beyond = (await api.waitForEnd(later)).at(-1)!.id;

    for (const id of [running, ended]) {
      const events = `/builds/${id}/events`;
      await expectError(await api.fetch(`${events}?delivery=polling&after=${beyond}`), 400, /cursor/);
      await expectError(await api.fetch(`${events}?delivery=polling&after=${beyond}&waitMs=30000`), 400, /cursor/);
      await expectError(await api.fetch(`${events}?after=${beyond}`), 400, /cursor/);
      await expectError(await api.fetch(events, { headers: { 'Last-Event-ID': beyond } }), 400, /cursor/);
      await expectError(await api.fetch(events, { headers: { Accept: 'text/event-stream', 'Last-Event-ID': beyond } }), 400, /cursor/);
      await expectError(await api.fetch(`${events}?after=${beyond}`, { headers: { Accept: 'text/event-stream' } }), 400, /cursor/);
    }

    // At the end (not past it) a stream still ends at once: NDJSON empty, SSE 204, polling done.
    const terminal = endedEvents.at(-1)!.id;
    const ndjson = await api.fetch(`/builds/${ended}/events?after=${terminal}`);
    expect(ndjson.status).toBe(200);
    expect(await ndjsonEvents(ndjson)).toEqual([]);
    const sse = await api.fetch(`/builds/${ended}/events`, { headers: { Accept: 'text/event-stream', 'Last-Event-ID': terminal } });
    expect(sse.status).toBe(204);
    expect(await api.poll(ended, { after: terminal, waitMs: 30_000 })).toEqual({ events: [], next: terminal, done: true });
    // The running job was not disturbed.
    expect(await api.poll(running)).toEqual({ events: runningEvents, next: runningEvents.at(-1)!.id, done: false });
    expect((await api.cancel(running)).status).toBe(202);
  });

  if (backend === 'bullmq') {
    it('a follower ends when its job vanishes (expired, or lost by Redis), though no entry will ever reach it', async () => {
      const id = await api.startBuild({ steps: 100, stepMs: 60_000 });
      const seen = await api.waitForEvent(id, (event) => event.type === 'step');
      const response = await api.fetch(`/builds/${id}/events?after=${seen.at(-1)!.id}`);
      expect(response.status).toBe(200);
      const lines = readLines(response);
      const redisClient = new Redis(redis!.url);
      try {
        await redisClient.del(new RedisKeys('hardening').meta('jobs', id), new RedisKeys('hardening').events('jobs', id));
      } finally {
        redisClient.disconnect();
      }
      const rest: string[] = [];
      for await (const line of lines) rest.push(line);
      expect(rest).toEqual([]); // ended without a made-up terminal event
      await expectError(await api.fetch(`/builds/${id}`), 404);
    });
  }
});

describe('ownership is checked before any event is read (3, bullmq)', () => {
  let redis: RedisServer;
  let server: ApiServer;
  let alice: ApiClient;
  let bob: ApiClient;

  beforeAll(async () => {
    redis = await RedisServer.start();
    server = await startApiServer({ JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: redis.url, JOB_QUEUE_PREFIX: 'owners', AUTH_TOKENS: TOKENS });
    alice = new ApiClient(server.baseUrl, ALICE_TOKEN);
    bob = new ApiClient(server.baseUrl, BOB_TOKEN);
  });

  afterAll(async () => {
    await server?.close();
    await redis?.destroy();
  });

  it("another owner's job costs a lookup of its owner only: no event, result or length is read for them", async () => {
    const id = await alice.startBuild({ steps: 20, stepMs: 0, tokensPerStep: 50 });
    const all = await alice.waitForEnd(id);
    expect(all.length).toBeGreaterThan(1000);
    const reads = new Set(['XRANGE', 'XREVRANGE', 'XREAD', 'XLEN', 'HGETALL', 'HGET', 'HMGET', 'XINFO']);
    const monitor = await RedisMonitor.start(redis.url, (command) => command.args.some((arg) => arg.includes(id)));
    try {
      const from = monitor.mark();
      const path = `/builds/${id}`;
      await expectError(await bob.fetch(`${path}/events?delivery=polling&limit=1000`), 404);
      await expectError(await bob.fetch(`${path}/events?delivery=polling&after=${all[5].id}&limit=1000`), 404);
      await expectError(await bob.fetch(`${path}/events`), 404);
      await expectError(await bob.fetch(`${path}/events`, { headers: { Accept: 'text/event-stream' } }), 404);
      await expectError(await bob.fetch(path), 404);
      await expectError(await bob.fetch(`${path}/cancel`, { method: 'POST' }), 404);
      // Alice's own read (of a page size Bob never asks for) marks the end of Bob's commands:
      // Redis runs and reports commands in order.
      const own = await alice.poll(id, { limit: 7 });
      expect(own.events).toEqual(all.slice(0, 7));
      const isAlicesRange = (command: { name: string; args: string[] }) => command.name === 'XRANGE' && command.args.at(-1) === '7';
      await monitor.until(
        () => monitor.since(from, isAlicesRange).length > 0,
        10_000,
        () => 'the XRANGE of the owner',
      );
      const alicesRange = monitor.commands.indexOf(monitor.since(from, isAlicesRange)[0]);
      const bobs = monitor.commands.slice(from, alicesRange);
      expect(bobs.length).toBeGreaterThan(0);
      // Only the owner field was looked at; Alice's read, by contrast, read the events.
      for (const command of bobs) {
        if (!reads.has(command.name)) continue;
        expect({ name: command.name, args: command.args }).toEqual({
          name: expect.stringMatching(/^H(M)?GET$/),
          args: expect.arrayContaining(['owner']),
        });
      }
    } finally {
      monitor.stop();
    }
  });
});

describe('server timeouts and requests the HTTP parser rejects (4)', () => {
  let server: ApiServer;
  let alice: ApiClient;

  beforeAll(async () => {
    server = await startApiServer({
      AUTH_TOKENS: TOKENS,
      HTTP_HEADERS_TIMEOUT_MS: '500',
      HTTP_REQUEST_TIMEOUT_MS: '1500',
      HTTP_KEEP_ALIVE_TIMEOUT_MS: '300',
    });
    alice = new ApiClient(server.baseUrl, ALICE_TOKEN);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('300 sockets that never finish their headers get 408 and are closed, while normal requests are served', async () => {
    const sockets = await Promise.all(Array.from({ length: 300 }, () => openSocket(server.baseUrl)));
    const answers = sockets.map((socket, index) => {
      const answer = collect(socket, 10_000);
      // Half send part of their headers, half send nothing at all.
      if (index % 2 === 0) socket.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${index}\r\n`);
      return answer;
    });
    const healthy = await alice.fetch('/health');
    expect(healthy.status).toBe(200);
    for (const answer of await Promise.all(answers)) {
      const json = expectRawJsonError(answer, 408);
      expect(json.message).toMatch(/not received in time/);
      expect(answer.elapsedMs).toBeLessThan(5_000);
    }
  });

  it('a body that never arrives whole gets 408 and its socket is closed', async () => {
    const socket = await openSocket(server.baseUrl);
    const answer = collect(socket, 10_000);
    socket.write(
      `POST /builds HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ALICE_TOKEN}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"steps":',
    );
    const exchange = await answer;
    expectRawJsonError(exchange, 408);
    expect(exchange.elapsedMs).toBeGreaterThanOrEqual(1_000);
    expect(exchange.elapsedMs).toBeLessThan(6_000);
  });

  it('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
    const socket = await openSocket(server.baseUrl);
    const answer = collect(socket, 10_000);
    socket.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const exchange = await answer;
    expect(exchange.closedByServer).toBe(true);
    expect(parseRawResponse(exchange.text).status).toBe(200);
    expect(exchange.elapsedMs).toBeLessThan(5_000);
  });

  it.each([
    ['a control byte in the path', 'GET /he\x01alth HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 400],
    [
      'conflicting Content-Length headers',
      'POST /builds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      400,
    ],
    [
      'Content-Length with Transfer-Encoding',
      'POST /builds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
    ],
    ['a line that is not a header', 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nnot a header\r\n\r\n', 400],
    ['headers too large', `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'x'.repeat(20_000)}\r\n\r\n`, 431],
  ])('%s: its 4xx status with the JSON error shape', async (_name, request, status) => {
    expectRawJsonError(await rawExchange(server.baseUrl, request, 10_000), status);
  });

  it.each([
    [{ HTTP_HEADERS_TIMEOUT_MS: 'soon' }, /HTTP_HEADERS_TIMEOUT_MS must be an integer/],
    [{ HTTP_REQUEST_TIMEOUT_MS: '0' }, /HTTP_REQUEST_TIMEOUT_MS must be an integer from 100/],
    [{ HTTP_KEEP_ALIVE_TIMEOUT_MS: '-5' }, /HTTP_KEEP_ALIVE_TIMEOUT_MS must be an integer/],
    [{ HTTP_HEADERS_TIMEOUT_MS: '5000', HTTP_REQUEST_TIMEOUT_MS: '1000' }, /must not be greater than HTTP_REQUEST_TIMEOUT_MS/],
  ])('a bad limit stops start-up naming the variable: %j', async (env, message) => {
    await expect(startApiServer(env)).rejects.toThrow(message);
  });
});

describe('streams honour Connection: close (5)', () => {
  let server: ApiServer;
  let api: ApiClient;
  let id: string;
  let events: WireEvent[];

  beforeAll(async () => {
    server = await startApiServer();
    api = new ApiClient(server.baseUrl);
    id = await api.startBuild({ steps: 2, stepMs: 0, tokensPerStep: 1 });
    events = await api.waitForEnd(id);
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each([
    ['NDJSON', 'application/x-ndjson'],
    ['SSE', 'text/event-stream'],
  ])('%s: the answer says Connection: close and the server closes the connection after the terminal event', async (_name, accept) => {
    const request = (connection: string) =>
      `GET /builds/${id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${accept}\r\nConnection: ${connection}\r\n\r\n`;
    const closing = await rawExchange(server.baseUrl, request('close'), 10_000);
    expect(closing.closedByServer).toBe(true);
    const answer = parseRawResponse(closing.text);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('connection')).toBe('close');
    expect(answer.body).toContain(events.at(-1)!.type);
    expect(isTerminal(events.at(-1)!.type)).toBe(true);

    // Without it the connection stays open for the next request (keep-alive), as before.
    const kept = await rawExchange(server.baseUrl, request('keep-alive'), 1_000);
    expect(kept.closedByServer).toBe(false);
    expect(parseRawResponse(kept.text).headers.get('connection')).toBe('keep-alive');
  });
});
