import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { AppProcess } from '../support/app-process.js';
import {
  BuildApi,
  assertOrderedStream,
  compareEventIds,
  expectedBuildEvents,
  isTerminal,
  readLines,
  readSse,
  typesAndData,
  withoutTs,
  type EventPage,
  type WireEvent,
} from '../support/build-api.js';
import { RedisServer } from '../support/redis-server.js';
import { RedisKeys } from 'nestjs-job-streams';

/**
 * The bullmq backend against a Redis that needs a password, uses another database than 0, and
 * goes away while jobs run (DESIGN.md, "BullMQ backend": fail fast with credentials redacted when
 * Redis is unreachable at start; while it is lost, 503 with `Retry-After`, never a hang; then
 * reconnect, and nothing already appended is lost or duplicated).
 */

/** A password with characters that must be percent-encoded in a URL; `SECRET` is its distinctive part. */
const SECRET = randomUUID().replace(/-/g, '').slice(0, 16);
const PASSWORD = `p@ss/${SECRET}:%`;
const ENCODED_PASSWORD = encodeURIComponent(PASSWORD);

/** Waits for a process that should not start to exit; a still running one gives its output instead. */
async function exitOf(app: AppProcess, timeoutMs = 20_000): Promise<number | string> {
  const timeout = new AbortController();
  try {
    return await Promise.race([
      app.exited(),
      delay(timeoutMs, undefined, { signal: timeout.signal }).then(
        () => `still running after ${timeoutMs} ms:\n${app.output}`,
        () => 'timer cleared',
      ),
    ]);
  } finally {
    timeout.abort();
  }
}

async function connectClient(url: string, clients: Redis[]): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  clients.push(client);
  await client.connect();
  return client;
}

describe('REDIS_URL with a password and a database index (bullmq backend)', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];
  const clients: Redis[] = [];

  const urlOf = (auth: string, db: string): string => `redis://${auth}127.0.0.1:${redis!.port}/${db}`;

  beforeAll(async () => {
    redis = await RedisServer.start({ password: PASSWORD });
  });

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it.each([
    { form: 'redis://:<password>@host:port/3, an api that runs the jobs itself', auth: `:${ENCODED_PASSWORD}@`, split: false },
    { form: 'redis://default:<password>@host:port/3, an api and a worker', auth: `default:${ENCODED_PASSWORD}@`, split: true },
  ])('$form: a build runs to completion and all of its keys are in database 3, none in 0', async ({ auth, split }) => {
    const prefix = `cfg-${randomUUID().slice(0, 8)}`;
    const env = { JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: urlOf(auth, '3'), JOB_QUEUE_PREFIX: prefix };
    const started = await AppProcess.startAll(
      processes,
      split ? [AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }), AppProcess.worker(env)] : [AppProcess.api(env)],
    );
    const api = new BuildApi(started[0].url, 'api');

    const health = await api.fetch('/health');
    expect({ status: health.status, body: await health.json() }).toEqual({
      status: 200,
      body: { status: 'ok', backend: 'bullmq', details: { circuitBreakers: [] } },
    });
    const id = await api.start({ steps: 3, stepMs: 10, tokensPerStep: 2 });
    const events = await api.follow(id, 'ndjson').ended;
    expect(typesAndData(events)).toEqual(expectedBuildEvents(3, 2));
    assertOrderedStream(events, 'NDJSON');
    expect(await api.state(id)).toMatchObject({ id, state: 'completed', attempt: 1, result: { steps: 3 } });

    const [db3, db0] = await Promise.all([
      connectClient(urlOf(`:${ENCODED_PASSWORD}@`, '3'), clients),
      connectClient(urlOf(`:${ENCODED_PASSWORD}@`, '0'), clients),
    ]);
    const meta = new RedisKeys(prefix).meta('jobs', id);
    const stream = new RedisKeys(prefix).events('jobs', id);
    expect(await db3.exists(meta, stream)).toBe(2);
    expect(await db3.hget(meta, 'state')).toBe('completed');
    expect(await db3.xlen(stream)).toBe(events.length);
    // BullMQ's own keys went to database 3 as well (the worker's connections included).
    expect(await db3.exists(`${prefix}:jobs:${id}`)).toBe(1);
    expect(await db0.keys(`${prefix}*`)).toEqual([]);
    for (const app of started) expect(app.output).not.toContain(SECRET);
  });

  it('a wrong or missing password: the api and the worker exit non-zero at once, naming Redis at the redacted URL, never a password', async () => {
    const WRONG = `wrong${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const prefix = `cfg-${randomUUID().slice(0, 8)}`;
    // Redis' own reason is passed on: WRONGPASS for a wrong password, NOAUTH for none.
    const cases: Array<{ app: 'api' | 'worker'; auth: string; reason: RegExp }> = [
      { app: 'api', auth: `:${WRONG}@`, reason: /WRONGPASS/ },
      { app: 'api', auth: `default:${WRONG}@`, reason: /WRONGPASS/ },
      { app: 'api', auth: '', reason: /NOAUTH/ },
      { app: 'worker', auth: `:${WRONG}@`, reason: /WRONGPASS/ },
      { app: 'worker', auth: `default:${WRONG}@`, reason: /WRONGPASS/ },
      { app: 'worker', auth: '', reason: /NOAUTH/ },
    ];
    const apps = cases.map(({ app, auth }) => {
      const env = { JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: urlOf(auth, '3'), JOB_QUEUE_PREFIX: prefix, JOB_QUEUE_WORKER: 'true' };
      const spawned =
        app === 'api' ? AppProcess.spawn('api', { ...env, PORT: '0' }, undefined) : AppProcess.spawn('worker', env, undefined);
      processes.push(spawned);
      return spawned;
    });
    const started = Date.now();
    const exits = await Promise.all(apps.map((app) => exitOf(app)));
    expect(Date.now() - started).toBeLessThan(15_000);
    cases.forEach(({ app, auth, reason }, i) => {
      const output = apps[i].output;
      const label = `${app} with ${auth ? auth.replace(WRONG, '<wrong password>') : 'no password'}`;
      expect({ label, exit: exits[i] }).toEqual({ label, exit: expect.any(Number) });
      expect({ label, exit: exits[i] }).not.toEqual({ label, exit: 0 });
      expect({ label, output }).toEqual({ label, output: expect.stringMatching(/Redis/) });
      expect({ label, output }).toEqual({ label, output: expect.stringContaining(`127.0.0.1:${redis!.port}`) });
      expect({ label, output }).toEqual({ label, output: expect.stringMatching(reason) });
      expect({ label, leaks: output.includes(WRONG) || output.includes(SECRET) }).toEqual({ label, leaks: false });
      if (app === 'api') expect({ label, output }).not.toEqual({ label, output: expect.stringMatching(/listening/i) });
    });
  }, 30_000);

  it.each([
    { db: '16', why: 'out of range (the server has databases 0 to 15)' },
    { db: 'abc', why: 'not a number' },
  ])(
    'a database index $why: the api and the worker exit non-zero, and nothing is written to database 0',
    async ({ db }) => {
      const prefix = `cfg-${randomUUID().slice(0, 8)}`;
      const env = {
        JOB_QUEUE_BACKEND: 'bullmq',
        REDIS_URL: urlOf(`:${ENCODED_PASSWORD}@`, db),
        JOB_QUEUE_PREFIX: prefix,
        JOB_QUEUE_WORKER: 'true',
      };
      const apps = [AppProcess.spawn('api', { ...env, PORT: '0' }, undefined), AppProcess.spawn('worker', env, undefined)];
      processes.push(...apps);
      const exits = await Promise.all(apps.map((app) => exitOf(app)));
      for (const [i, app] of apps.entries()) {
        const label = i === 0 ? 'api' : 'worker';
        expect({ label, exit: exits[i] }).toEqual({ label, exit: expect.any(Number) });
        expect({ label, exit: exits[i] }).not.toEqual({ label, exit: 0 });
        expect({ label, output: app.output }).toEqual({ label, output: expect.stringMatching(/REDIS_URL|redis\.url/) });
        expect({ label, leaks: app.output.includes(SECRET) }).toEqual({ label, leaks: false });
      }
      const db0 = await connectClient(urlOf(`:${ENCODED_PASSWORD}@`, '0'), clients);
      expect(await db0.keys(`${prefix}*`)).toEqual([]);
    },
    30_000,
  );
});

/** What one client saw while following a job across the outage. */
interface ReaderRun {
  label: string;
  kind: 'ndjson' | 'sse' | 'polling';
  /** Every event received, in received order, across all of its requests. */
  events: WireEvent[];
  /** Requests answered 503 (each with a valid `Retry-After`, checked as they come). */
  unavailable: number;
  /** Streams that ended or broke before the terminal event, then resumed from the last id. */
  cuts: number;
  /** Requests that failed without an HTTP answer. */
  errors: string[];
  /** Protocol violations (checked after the run, so that one shows with everything else). */
  violations: string[];
}

const STATUS_503_BODY = /^application\/json/;

/** Checks a 503 answer: `Retry-After` in whole seconds, a JSON body that names no URL, host, port or secret. */
async function unavailableAnswer(response: Response, port: number, label: string): Promise<{ retryAfterMs: number; problems: string[] }> {
  const problems: string[] = [];
  const retryAfter = response.headers.get('retry-after');
  if (!retryAfter || !/^[0-9]+$/.test(retryAfter) || Number(retryAfter) < 1 || Number(retryAfter) > 60)
    problems.push(`${label}: Retry-After ${JSON.stringify(retryAfter)}`);
  const contentType = response.headers.get('content-type') ?? '';
  if (!STATUS_503_BODY.test(contentType)) problems.push(`${label}: content-type ${contentType}`);
  const text = await response.text();
  let body: { message?: unknown } | undefined;
  try {
    body = JSON.parse(text) as { message?: unknown };
  } catch {
    problems.push(`${label}: body is not JSON: ${text}`);
  }
  if (typeof body?.message !== 'string' || body.message === '') problems.push(`${label}: no message in ${text}`);
  for (const secret of ['redis://', '127.0.0.1', String(port), SECRET, ENCODED_PASSWORD]) {
    if (text.includes(secret)) problems.push(`${label}: the 503 body contains ${JSON.stringify(secret)}: ${text}`);
  }
  return { retryAfterMs: Number(retryAfter ?? 1) * 1000, problems };
}

/**
 * One request of a reader: the response, or `undefined` when the request failed without an answer
 * or was answered 503 (counted, checked, and waited out as `Retry-After` says), so the reader asks again.
 */
async function answered(run: ReaderRun, port: number, request: () => Promise<Response>): Promise<Response | undefined> {
  let response: Response;
  try {
    response = await request();
  } catch (error) {
    run.errors.push((error as Error).message);
    await delay(200);
    return undefined;
  }
  if (response.status !== 503) return response;
  run.unavailable++;
  const { retryAfterMs, problems } = await unavailableAnswer(response, port, run.label);
  run.violations.push(...problems);
  await delay(retryAfterMs);
  return undefined;
}

/**
 * Follows a job by NDJSON or SSE until its terminal event: a stream that breaks or ends early is
 * resumed from the last id received (`?after=` / `Last-Event-ID`), a 503 is retried after its
 * `Retry-After`. When `drop` aborts, the connection open at that moment is dropped (once), as a
 * client or proxy would, and the reader resumes like after any other cut.
 */
async function followStream(
  api: BuildApi,
  id: string,
  kind: 'ndjson' | 'sse',
  port: number,
  deadline: number,
  drop?: AbortSignal,
): Promise<ReaderRun> {
  const label = `${kind} on ${api.label}${drop ? ', dropped while Redis is down' : ''}`;
  const run: ReaderRun = { label, kind, events: [], unavailable: 0, cuts: 0, errors: [], violations: [] };
  const push = (event: WireEvent): void => {
    const last = run.events.at(-1);
    if (last && isTerminal(last.type)) run.violations.push(`${event.type} ${event.id} after the terminal ${last.type}`);
    else if (last && compareEventIds(last.id, event.id) >= 0) run.violations.push(`${event.id} does not come after ${last.id}`);
    run.events.push(event);
  };
  while (!run.events.some((event) => isTerminal(event.type))) {
    if (Date.now() > deadline) throw new Error(`${run.label}: no terminal event in time: ${JSON.stringify(run)}`);
    const last = run.events.at(-1)?.id;
    const headers: Record<string, string> = { Accept: kind === 'sse' ? 'text/event-stream' : 'application/x-ndjson' };
    if (kind === 'sse' && last) headers['Last-Event-ID'] = last;
    const query = kind === 'ndjson' && last ? `?after=${encodeURIComponent(last)}` : '';
    const timeout = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
    const signal = drop && !drop.aborted ? AbortSignal.any([timeout, drop]) : timeout;
    const response = await answered(run, port, () => api.fetch(`/builds/${id}/events${query}`, { headers, signal }));
    if (!response) continue;
    if (kind === 'sse' && response.status === 204) {
      run.violations.push(`204 although the last event received, ${last}, is not the terminal one`);
      break;
    }
    if (response.status !== 200) throw new Error(`${run.label}: answered ${response.status} ${await response.text()}`);
    try {
      if (kind === 'ndjson') for await (const line of readLines(response)) push(JSON.parse(line) as WireEvent);
      else for await (const event of readSse(response)) push(event);
    } catch (error) {
      run.errors.push((error as Error).message);
    }
    if (!run.events.some((event) => isTerminal(event.type))) run.cuts++;
  }
  return run;
}

/** Follows a job by long-polling until a page says `done`, checking each page; a 503 is retried after its `Retry-After`. */
async function followPolling(api: BuildApi, id: string, port: number, deadline: number): Promise<ReaderRun> {
  const run: ReaderRun = {
    label: `polling on ${api.label}`,
    kind: 'polling',
    events: [],
    unavailable: 0,
    cuts: 0,
    errors: [],
    violations: [],
  };
  const LIMIT = 25;
  let after: string | undefined;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`${run.label}: not done in time: ${JSON.stringify(run)}`);
    const params = new URLSearchParams({ delivery: 'polling', waitMs: '1000', limit: String(LIMIT) });
    if (after) params.set('after', after);
    const response = await answered(run, port, () => api.fetch(`/builds/${id}/events?${params}`, { signal: AbortSignal.timeout(10_000) }));
    if (!response) continue;
    const text = await response.text();
    if (response.status !== 200) throw new Error(`${run.label}: answered ${response.status} ${text}`);
    const page = JSON.parse(text) as EventPage;
    const last = page.events.at(-1);
    if (page.events.length > LIMIT) run.violations.push(`a page of ${page.events.length} events`);
    if (page.next !== (last ? last.id : (after ?? '0'))) run.violations.push(`next ${page.next} after ${after} with last ${last?.id}`);
    if (page.done !== (last !== undefined && isTerminal(last.type)))
      run.violations.push(`done=${page.done} on a page ending with ${last?.type}`);
    run.events.push(...page.events);
    if (page.done) return run;
    after = page.next;
  }
}

/**
 * Checks a build's complete stream against what the contract promises when an attempt may have
 * been restarted (a worker that lost its BullMQ lock while Redis was away): the stream is split
 * into attempts at each `started`; attempt numbers increase; every attempt's events are the
 * beginning of the build's events (nothing skipped, nothing repeated within it); the last attempt
 * has all of them, every step index 1..steps once; one terminal event, `completed`, last.
 */
function expectCompleteBuild(events: readonly WireEvent[], steps: number, tokens: number): number {
  assertOrderedStream(events, 'the whole stream');
  const handlerEvents = expectedBuildEvents(steps, tokens).slice(1, -1);
  expect(events[0]).toMatchObject({ type: 'started', data: { attempt: 1 } });
  expect(typesAndData(events.slice(-1))).toEqual([{ type: 'completed', data: { result: { steps } } }]);
  const attempts: WireEvent[][] = [];
  for (const event of events.slice(0, -1)) {
    if (event.type === 'started') attempts.push([event]);
    else attempts.at(-1)!.push(event);
  }
  let previous = 0;
  for (const [i, [started, ...rest]] of attempts.entries()) {
    const attempt = (started.data as { attempt: number }).attempt;
    expect({ i, attemptIncreases: attempt > previous }).toEqual({ i, attemptIncreases: true });
    previous = attempt;
    expect({ i, events: typesAndData(rest) }).toEqual({ i, events: handlerEvents.slice(0, rest.length) });
  }
  const final = attempts.at(-1)!.slice(1);
  expect(typesAndData(final)).toEqual(handlerEvents);
  const stepIndexes = final.filter((event) => event.type === 'step').map((event) => (event.data as { index: number }).index);
  expect(stepIndexes).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
  return attempts.length;
}

describe('Redis lost while running: an api (JOB_QUEUE_WORKER=false) and a worker (bullmq backend)', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];
  const clients: Redis[] = [];
  let prefix: string;
  let apiProcess: AppProcess;
  let workerProcess: AppProcess;
  let api: BuildApi;

  beforeAll(async () => {
    redis = await RedisServer.start({ appendOnly: true, password: PASSWORD });
    prefix = `outage-${randomUUID().slice(0, 8)}`;
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: `redis://:${ENCODED_PASSWORD}@127.0.0.1:${redis.port}/2`,
      JOB_QUEUE_PREFIX: prefix,
      SSE_HEARTBEAT_MS: '500',
    };
    [apiProcess, workerProcess] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.worker(env),
    ]);
    api = new BuildApi(apiProcess.url, 'api');
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it('requests get a prompt 503 with Retry-After while Redis is down; after it is back the build completes and every reader has every event once, in order', async () => {
    const STEPS = 40;
    const STEP_MS = 100;
    const TOKENS = 10;
    const port = redis!.port;
    const id = await api.start({ steps: STEPS, stepMs: STEP_MS, tokensPerStep: TOKENS });
    const deadline = Date.now() + 45_000;
    const drop = new AbortController();
    const readers = [
      followStream(api, id, 'ndjson', port, deadline),
      followStream(api, id, 'sse', port, deadline),
      followPolling(api, id, port, deadline),
      followStream(api, id, 'ndjson', port, deadline, drop.signal),
      followStream(api, id, 'sse', port, deadline, drop.signal),
    ];
    readers.forEach((reader) => reader.catch(() => undefined)); // awaited below

    // Well into the build, with steps still to come: Redis goes away.
    await api.waitForEvent(id, (event) => event.type === 'step' && (event.data as { index: number }).index === 5);
    const seenBefore = (await api.poll(id)).events;
    const stoppedAt = Date.now();
    await redis!.stop();
    // Two of the streams lose their connection now: they come back while Redis is still down.
    drop.abort();

    // Everything that needs Redis answers 503 with Retry-After, promptly, twice over the outage.
    // Commands fail fast while Redis is away; none waits for a reconnect (with ioredis' offline
    // queue on, the second round here would take about 2 s: the queue is flushed only every
    // second reconnect attempt).
    const PROMPT_MS = 1000;
    const unknownId = randomUUID();
    const requests: Array<[string, string, RequestInit?]> = [
      ['GET /health', '/health'],
      ['GET /builds/:id', `/builds/${id}`],
      [
        'GET /builds/:id/events?delivery=polling&waitMs=10000',
        `/builds/${id}/events?delivery=polling&waitMs=10000&after=${seenBefore.at(-1)!.id}`,
      ],
      ['GET /builds/:id/events (NDJSON)', `/builds/${id}/events`, { headers: { Accept: 'application/x-ndjson' } }],
      ['GET /builds/:id/events (SSE)', `/builds/${id}/events`, { headers: { Accept: 'text/event-stream' } }],
      [
        'POST /builds',
        '/builds',
        { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ steps: 1, stepMs: 0 }) },
      ],
      ['POST /builds/:unknown/cancel', `/builds/${unknownId}/cancel`, { method: 'POST' }],
    ];
    const problems: string[] = [];
    for (const round of [1, 2]) {
      const answers = await Promise.all(
        requests.map(async ([label, path, init]) => {
          const before = Date.now();
          const response = await api.fetch(path, { ...init, signal: AbortSignal.timeout(15_000) });
          const ms = Date.now() - before;
          const { problems: found } = response.status === 503 ? await unavailableAnswer(response, port, label) : { problems: [] };
          if (response.status !== 503) await response.body?.cancel();
          problems.push(...found);
          return { label, round, status: response.status, prompt: ms < PROMPT_MS || `took ${ms} ms` };
        }),
      );
      expect(answers).toEqual(requests.map(([label]) => ({ label, round, status: 503, prompt: true })));
      if (round === 1) await delay(1000); // the second round well into the outage, after some reconnect attempts
    }
    expect(problems).toEqual([]);
    expect(apiProcess.child.exitCode).toBeNull();
    expect(workerProcess.child.exitCode).toBeNull();

    await redis!.restart();
    const restartedAt = Date.now();
    const runs = await Promise.all(readers);

    // The api is healthy again, within its reconnect backoff.
    let health: number | undefined;
    for (const until = Date.now() + 10_000; Date.now() < until; await delay(100)) {
      const response = await api.fetch('/health');
      await response.body?.cancel();
      health = response.status;
      if (health === 200) break;
    }
    expect(health).toBe(200);

    // The reference: the whole stream as stored, read again from the start.
    const all = await api.follow(id, 'polling', { limit: 1000 }).ended;
    // One attempt: the worker's lock (30 s by default) outlives an outage of a second or two, so
    // the worker keeps the job and goes on with it after reconnecting.
    expect(expectCompleteBuild(all, STEPS, TOKENS)).toBe(1);
    // What was there before the outage is still there, unchanged; the build ran on across the
    // outage (stream ids are Redis times: what the handler emitted meanwhile was appended after it).
    expect(all.slice(0, seenBefore.length)).toEqual(seenBefore);
    expect(all.filter((event) => event.ts! < stoppedAt).length).toBeLessThan(all.length / 2);
    expect(all.filter((event) => event.ts! >= restartedAt).length).toBeGreaterThan(all.length / 4);
    for (const run of runs) {
      expect({ reader: run.label, violations: run.violations }).toEqual({ reader: run.label, violations: [] });
      const expected = run.kind === 'sse' ? withoutTs(all) : all;
      expect({ reader: run.label, events: run.events }).toEqual({ reader: run.label, events: expected });
    }
    // The dropped streams were refused while Redis was down, then resumed from their last id.
    for (const run of runs.slice(3)) {
      expect({ reader: run.label, resumedAfter503: run.cuts >= 1 && run.unavailable >= 1 }).toEqual({
        reader: run.label,
        resumedAfter503: true,
      });
    }
    expect(await api.state(id)).toMatchObject({ id, state: 'completed', result: { steps: STEPS } });

    // The refused POST left nothing behind; a new build runs end to end.
    const db = await connectClient(`redis://:${ENCODED_PASSWORD}@127.0.0.1:${port}/2`, clients);
    expect(await db.keys(`${prefix}:*:jq-meta`)).toEqual([new RedisKeys(prefix).meta('jobs', id)]);
    const next = await api.start({ steps: 3, stepMs: 10, tokensPerStep: 1 });
    expect(typesAndData(await api.follow(next, 'ndjson').ended)).toEqual(expectedBuildEvents(3, 1));

    for (const app of [apiProcess, workerProcess]) {
      expect(app.child.exitCode).toBeNull();
      expect(app.output).not.toContain(SECRET);
    }
  }, 60_000);
});

describe('Redis lost for longer than the worker holds its lock (JOB_LOCK_DURATION_MS=1000)', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];
  let api: BuildApi;

  beforeAll(async () => {
    redis = await RedisServer.start({ appendOnly: true, password: PASSWORD });
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: `redis://:${ENCODED_PASSWORD}@127.0.0.1:${redis.port}/1`,
      JOB_QUEUE_PREFIX: `lock-${randomUUID().slice(0, 8)}`,
      JOB_LOCK_DURATION_MS: '1000',
    };
    const [apiProcess] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.worker(env),
    ]);
    api = new BuildApi(apiProcess.url, 'api');
  }, 60_000);

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it('the build runs again as attempt 2; readers get attempt 1 up to where it was stopped, then all of attempt 2, each event once and in order', async () => {
    // Long enough that attempt 1's handler is still running when BullMQ, back on Redis, finds its
    // lock expired and hands the job out again (within two stalled checks, 1 s apart).
    const STEPS = 100;
    const STEP_MS = 100;
    const port = redis!.port;
    const id = await api.start({ steps: STEPS, stepMs: STEP_MS, tokensPerStep: 1 });
    const deadline = Date.now() + 50_000;
    const drop = new AbortController();
    const readers = [
      followStream(api, id, 'ndjson', port, deadline),
      followStream(api, id, 'sse', port, deadline),
      followPolling(api, id, port, deadline),
      followStream(api, id, 'ndjson', port, deadline, drop.signal),
    ];
    readers.forEach((reader) => reader.catch(() => undefined)); // awaited below

    await api.waitForEvent(id, (event) => event.type === 'step' && (event.data as { index: number }).index === 3);
    await redis!.stop();
    drop.abort();
    await delay(2500); // the lock (renewed every 500 ms, for 1000 ms) has expired by now
    await redis!.restart();
    const runs = await Promise.all(readers);

    // Attempt 2 ran on the same worker while attempt 1 was still winding down there: the end of
    // attempt 1 must not take attempt 2's lock renewal with it (else the job stalls again and
    // BullMQ fails it: "job stalled more than allowable limit").
    const all = await api.follow(id, 'polling', { limit: 1000 }).ended;
    expect(expectCompleteBuild(all, STEPS, 1)).toBe(2);
    for (const run of runs) {
      expect({ reader: run.label, violations: run.violations }).toEqual({ reader: run.label, violations: [] });
      expect({ reader: run.label, events: run.events }).toEqual({ reader: run.label, events: run.kind === 'sse' ? withoutTs(all) : all });
    }
    expect(await api.state(id)).toMatchObject({ id, state: 'completed', attempt: 2, result: { steps: STEPS } });
  }, 60_000);
});
