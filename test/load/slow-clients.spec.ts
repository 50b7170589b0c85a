import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { AppProcess } from '../support/app-process.js';
import {
  BuildApi,
  compareEventIds,
  expectedBuildEvents,
  isTerminal,
  mapLimit,
  readLines,
  readSse,
  type BuildBody,
  type WireEvent,
} from '../support/build-api.js';
import { auditDelivery, readStoredEvents, type StoredEvent } from '../support/delivery-audit.js';
import { RssSampler, mib, processMemory } from '../support/process-memory.js';
import { redisConnectionsOf } from '../support/redis-clients.js';
import { RedisMonitor, blockedConnectionsOf, type MonitoredCommand } from '../support/redis-monitor.js';
import { RedisServer } from '../support/redis-server.js';
import { kernelQueuedBytes } from '../support/socket-queues.js';
import { RedisKeys } from 'nestjs-job-streams';

/**
 * Slow and vanished clients (issue 4, item 3), against one api (no handlers) and one worker as
 * processes on a real Redis. Everything is observed from outside the api: its RSS in /proc, its
 * Redis connections and commands through `CLIENT LIST` and `MONITOR`.
 */

type StreamKind = 'ndjson' | 'sse';
/**
 * The api runs with a 64 MiB old space, as in the load test (see `memoryBounds` in
 * load-runner.ts): V8 then collects garbage before growing past it, so the api's RSS shows what
 * it holds rather than how long ago V8 last collected; an api that buffered what slow clients do
 * not read would exhaust it and crash.
 */
const API_OLD_SPACE_MIB = 64;
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * A streaming client that reads only when the test tells it to. While it is not pulled, nothing
 * reads the response body: the bytes stay in the kernel's socket buffers and the server sees a
 * client that does not keep up.
 */
class ControlledReader {
  readonly events: WireEvent[] = [];
  /** Body bytes read so far. */
  bytes = 0;
  ended = false;
  private readonly iterator: AsyncIterator<WireEvent>;

  private constructor(
    readonly label: string,
    response: Response,
    kind: StreamKind,
  ) {
    const count = new TransformStream<Uint8Array, Uint8Array>({
      transform: (chunk, controller) => {
        this.bytes += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    const counted = new Response(response.body!.pipeThrough(count));
    this.iterator = (kind === 'sse' ? readSse(counted) : ndjsonEvents(counted))[Symbol.asyncIterator]();
  }

  static async open(api: BuildApi, jobId: string, kind: StreamKind, label: string): Promise<ControlledReader> {
    const accept = kind === 'sse' ? 'text/event-stream' : 'application/x-ndjson';
    const response = await api.fetch(`/builds/${encodeURIComponent(jobId)}/events`, { headers: { Accept: accept } });
    if (response.status !== 200) throw new Error(`${label}: answered ${response.status} ${await response.text()}`);
    return new ControlledReader(label, response, kind);
  }

  /** Reads until `count` events have arrived in all. */
  async readAtLeast(count: number): Promise<void> {
    while (this.events.length < count && (await this.pull()));
    if (this.events.length < count) throw new Error(`${this.label}: the stream ended after ${this.events.length} events`);
  }

  /** Reads until the server ends the stream. */
  async readToEnd(): Promise<void> {
    while (await this.pull());
  }

  private async pull(): Promise<boolean> {
    const next = await this.iterator.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    this.events.push(next.value);
    return true;
  }
}

async function* ndjsonEvents(response: Response): AsyncGenerator<WireEvent> {
  for await (const line of readLines(response)) {
    const event = JSON.parse(line) as WireEvent;
    yield { id: event.id, type: event.type, data: event.data };
  }
}

/**
 * Resolves once the job's stream in Redis holds its terminal event: each blocking `XREAD` returns
 * as soon as anything newer than the last entry seen is appended.
 */
async function storedTerminal(redis: Redis, key: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [last] = (await redis.xrevrange(key, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
    if (last && isTerminal(last[1][last[1].indexOf('type') + 1])) return;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${key} has no terminal event after ${timeoutMs} ms (last: ${last?.[0]})`);
    await redis.xread('COUNT', 1, 'BLOCK', Math.min(left, 5000), 'STREAMS', key, last ? last[0] : '0-0');
  }
}

/** Resolves once `check` holds; for states that announce no change, so they are checked every 50 ms until `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`after ${timeoutMs} ms: ${what}`);
    await delay(50);
  }
}

/**
 * Sends a request for `path` on a fresh connection and closes the connection right away, as a
 * client that goes away before the answer does; resolves once the connection is closed.
 */
function requestAndVanish(port: number, path: string, accept: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${accept}\r\n\r\n`));
    socket.on('error', reject);
    socket.on('close', () => resolve());
    socket.resume();
  });
}

describe('slow and vanished clients (bullmq backend: an api and a worker as processes)', () => {
  let redis: RedisServer | undefined;
  /** Commands of the test itself. */
  let commands: Redis;
  /** The test's own blocking reads (they would hold up `commands`). */
  let blocking: Redis;
  let apiProcess: AppProcess;
  let api: BuildApi;
  let prefix: string;
  const processes: AppProcess[] = [];
  let startedJobs: string[] = [];
  let monitor: RedisMonitor | undefined;

  const eventsKey = (id: string): string => new RedisKeys(prefix).events('jobs', id);
  const start = async (body: BuildBody): Promise<string> => {
    const id = await api.start(body);
    startedJobs.push(id);
    return id;
  };
  const stored = (id: string): Promise<StoredEvent[]> => readStoredEvents(commands, eventsKey(id));
  const rss = (): number => processMemory(apiProcess.pid).rss;

  beforeAll(async () => {
    redis = await RedisServer.start();
    prefix = `slow-${randomUUID().slice(0, 8)}`;
    const env = { JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: redis.url, JOB_QUEUE_PREFIX: prefix, WORKER_CONCURRENCY: '4' };
    [apiProcess] = await AppProcess.startAll(processes, [
      // No foreign-worker bridge on the api: its connection would stay blocked (and read BullMQ's
      // events stream) whenever the api took the bridge lease before the worker, which is not
      // what the checks of the api's reads below are about. The worker bridges.
      AppProcess.api({
        ...env,
        JOB_QUEUE_WORKER: 'false',
        JOB_BRIDGE_FOREIGN_WORKERS: 'false',
        NODE_OPTIONS: `--max-old-space-size=${API_OLD_SPACE_MIB}`,
      }),
      AppProcess.worker(env),
    ]);
    api = new BuildApi(apiProcess.url, 'api');
    commands = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    blocking = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await Promise.all([commands.connect(), blocking.connect()]);
    // Warm-up: every delivery served once, so that measurements start from a warm api.
    const warmUp = await api.start({ steps: 3, stepMs: 10, tokensPerStep: 3 });
    await Promise.all((['ndjson', 'sse', 'polling'] as const).map((kind) => api.follow(warmUp, kind).ended));
  }, 60_000);

  afterEach(async () => {
    monitor?.stop();
    monitor = undefined;
    const ids = startedJobs;
    startedJobs = [];
    await mapLimit(ids, 20, async (id) => void (await (await api.cancel(id)).text())).catch(() => undefined);
  }, 30_000);

  afterAll(async () => {
    commands?.disconnect();
    blocking?.disconnect();
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it('a client that stops reading gets backpressure: the api holds a bounded window, not what the job produces, and gets every event once when it reads again', async () => {
    // Two jobs of 90,002 events each, appended as fast as the worker can; each followed by four
    // NDJSON and four SSE clients that read their first event and then stop reading.
    const BUILD = { steps: 90, stepMs: 0, tokensPerStep: 999 };
    const EVENTS = expectedBuildEvents(BUILD.steps, BUILD.tokensPerStep).length;
    const KINDS: StreamKind[] = ['ndjson', 'sse', 'ndjson', 'sse', 'ndjson', 'sse', 'ndjson', 'sse'];
    const fromApi = RedisMonitor.fromProcess(apiProcess.pid);
    // The api's first reads run inside its read script (owner checked first), which Redis reports as `lua`.
    const fromApiOrScript = (command: MonitoredCommand): boolean => fromApi(command) || command.source === 'lua';
    monitor = await RedisMonitor.start(
      redis!.url,
      (command) => (command.name === 'XRANGE' || command.name === 'XREAD') && fromApiOrScript(command),
    );
    const baseline = rss();
    const sampler = new RssSampler([apiProcess.pid], 50);
    const ids = [await start(BUILD), await start(BUILD)];
    const readers = await Promise.all(
      ids.flatMap((id, job) => KINDS.map((kind, i) => ControlledReader.open(api, id, kind, `${kind} reader ${i} of job ${job}`))),
    );
    await Promise.all(readers.map((reader) => reader.readAtLeast(1)));

    // The producers run to their end while nobody reads; then the api goes quiet: once every
    // reader's socket is full, it stops reading these jobs (no stream read for a while, no
    // blocked XREAD left).
    await Promise.all(ids.map((id) => storedTerminal(blocking, eventsKey(id), 60_000)));
    await until(
      async () =>
        Date.now() - (monitor!.commands.at(-1)?.at ?? 0) > 250 && (await blockedConnectionsOf(commands, apiProcess.pid)).length === 0,
      15_000,
      'the api still reads the jobs',
    );
    const peak = sampler.stop().get(apiProcess.pid)!;
    const readWhilePaused = readers.reduce((sum, reader) => sum + reader.bytes, 0);
    const inKernel = kernelQueuedBytes(apiProcess.port!);
    const truth = await Promise.all(ids.map(stored));
    // How far the api read each job from Redis while its readers were paused (each read returns at most 1000 more).
    const readUpTo = ids.map((id, job) => {
      const cursors = monitor!.commands
        .map((command) => RedisMonitor.readCursor(command, eventsKey(id)))
        .filter((cursor) => cursor !== undefined);
      const furthest = cursors.reduce((max, cursor) => (cursor !== '-' && compareEventIds(cursor, max) > 0 ? cursor : max), '0-0');
      return Math.min(EVENTS, truth[job].filter((event) => compareEventIds(event.id, furthest) <= 0).length + 1000);
    });

    await Promise.all(readers.map((reader) => reader.readToEnd()));
    const owed = readers.reduce((sum, reader) => sum + reader.bytes, 0);
    const growth = peak - baseline;
    process.stdout.write(
      `slow readers: ${readers.length} readers on 2 jobs of ${EVENTS} events were owed ${mib(owed)} MiB; while they did not read ` +
        `they got ${mib(readWhilePaused)} MiB, the kernel held ${mib(inKernel.sent + inKernel.unread)} MiB in socket buffers, ` +
        `the api read ${readUpTo.join(' and ')} events of the jobs from Redis and its RSS went ${mib(baseline)} -> ${mib(peak)} MiB ` +
        `(+${mib(growth)} MiB, ${((growth / owed) * 100).toFixed(1)}% of what was owed)\n`,
    );

    // Every reader got every event exactly once, in order, after resuming.
    expect(truth.map((events) => events.length)).toEqual([EVENTS, EVENTS]);
    for (const [i, reader] of readers.entries()) {
      expect({ reader: reader.label, ...auditDelivery(truth[Math.floor(i / KINDS.length)], reader.events) }).toEqual({
        reader: reader.label,
        expected: EVENTS,
        delivered: EVENTS,
        lost: 0,
        duplicated: 0,
        outOfOrder: 0,
        corrupted: 0,
      });
      expect(reader.ended).toBe(true);
    }
    // They really did not read: nearly all of what they were owed came after they resumed.
    expect(readWhilePaused).toBeLessThan(owed * 0.05);
    // Backpressure reached Redis: the api stopped pulling each job's events while the readers'
    // sockets were full, instead of reading them all and buffering them.
    for (const upTo of readUpTo) expect(upTo).toBeLessThan(EVENTS);
    // And its memory. A server without backpressure holds what it read and could not send: over
    // half of what the readers were owed (the rest fits in the kernel's socket buffers); measured
    // +118 MiB (80%) without the 64 MiB budget, a crash with it. With backpressure the api holds
    // one batch per reader; what it shows on top is garbage of the data it did send, collected
    // within its budget (measured +11..32 MiB, 7..21%).
    expect(growth).toBeLessThan(owed * 0.35);
  }, 90_000);

  it('clients that vanish mid-stream, mid-long-poll or right after sending their request free their reader; the api keeps its connections and keeps serving', async () => {
    const connectionsBefore = await redisConnectionsOf(commands, apiProcess.pid);
    // An event every 50 ms for half a minute, and a job that goes quiet after its first step.
    const running = await start({ steps: 600, stepMs: 50, tokensPerStep: 0 });
    const quiet = await start({ steps: 2, stepMs: 60_000, tokensPerStep: 0 });
    const runningKey = eventsKey(running);
    const quietKey = eventsKey(quiet);
    const fromApi = RedisMonitor.fromProcess(apiProcess.pid);
    // The api's first reads run inside its read script (owner checked first), which Redis reports as `lua`.
    const fromApiOrScript = (command: MonitoredCommand): boolean => fromApi(command) || command.source === 'lua';
    monitor = await RedisMonitor.start(
      redis!.url,
      (command) =>
        ((command.name === 'XREAD' || command.name === 'XRANGE') && fromApiOrScript(command)) ||
        (command.name === 'XADD' && command.args[0] === runningKey),
    );
    const readsOf = (command: MonitoredCommand, key: string): boolean =>
      command.name !== 'XADD' && RedisMonitor.readCursor(command, key) !== undefined;

    // 20 streams (NDJSON and SSE) on the running job, each until it has received a few events.
    const streams = range(20).map((i) => api.follow(running, i % 2 ? 'sse' : 'ndjson', { timeoutMs: 60_000 }));
    await Promise.all(
      streams.map((stream) => stream.waitFor((event) => event.type === 'step' && (event.data as { index: number }).index >= 3)),
    );
    // 10 long-polls on the quiet job, after its last event: each waits in the api's shared reader.
    const quietStep = await api.waitForEvent(quiet, (event) => event.type === 'step');
    const beforePolls = monitor.mark();
    const polls = range(10).map(() => api.follow(quiet, 'polling', { after: quietStep.id, waitMs: 30_000, timeoutMs: 60_000 }));
    await monitor.until(
      () => {
        const seen = monitor!.since(beforePolls);
        return (
          seen.filter((command) => command.name === 'XRANGE' && command.args[0] === quietKey).length >= 10 &&
          seen.some((command) => command.name === 'XREAD' && readsOf(command, quietKey))
        );
      },
      10_000,
      () => 'the long-polls did not all read and wait',
    );

    // Everyone vanishes.
    const vanished = monitor.mark();
    for (const follower of [...streams, ...polls]) follower.stop();
    for (const follower of [...streams, ...polls]) await expect(follower.ended).rejects.toThrow(/stopped by the test/);
    // And 10 more clients ask for a stream of the quiet job and go away before the api answers:
    // Redis is paused for three seconds, so each request's first read is still in flight when the api
    // sees the connection close (it has sent that read by then: the request came before the close).
    await commands.client('PAUSE', 3000, 'ALL');
    const paused = Date.now();
    await Promise.all(
      range(10).map((i) =>
        requestAndVanish(
          apiProcess.port!,
          `/builds/${quiet}/events?after=${quietStep.id}`,
          i % 2 ? 'text/event-stream' : 'application/x-ndjson',
        ),
      ),
    );
    expect(Date.now() - paused).toBeLessThan(2500);

    // The api stops reading the running job: five of its appends in a row with no read of it by the api.
    let appendsUnread = 0;
    await monitor.until(
      () => {
        appendsUnread = 0;
        for (const command of monitor!.since(vanished)) {
          if (command.name === 'XADD') appendsUnread++;
          else if (readsOf(command, runningKey)) appendsUnread = 0;
        }
        return appendsUnread >= 5;
      },
      15_000,
      () => `the api still reads ${runningKey} after its clients left (appends since its last read: ${appendsUnread})`,
    );
    // And no job at all: its shared reader is no longer blocked in Redis (the quiet job's key let go too).
    await until(
      async () => (await blockedConnectionsOf(commands, apiProcess.pid)).length === 0,
      10_000,
      'the api reader still waits on a job',
    );
    // The same Redis connections as before: nothing was opened per client.
    expect(await redisConnectionsOf(commands, apiProcess.pid)).toEqual(connectionsBefore);

    // The api keeps serving: a new build read by every delivery, every event once and in order.
    const next = await start({ steps: 5, stepMs: 20, tokensPerStep: 3 });
    const followers = (['ndjson', 'sse', 'polling'] as const).map((kind) => api.follow(next, kind));
    const received = await Promise.all(followers.map((follower) => follower.ended));
    const truth = await stored(next);
    for (const events of received)
      expect(auditDelivery(truth, events)).toMatchObject({ delivered: truth.length, lost: 0, duplicated: 0, outOfOrder: 0, corrupted: 0 });
    expect((await api.fetch('/health')).status).toBe(200);
    expect((await api.state(running)).state).toBe('running');
  }, 60_000);

  it('50 clients following one job cost the api the same Redis reads as one client', async () => {
    const fromApi = RedisMonitor.fromProcess(apiProcess.pid);
    // The api's first reads run inside its read script (owner checked first), which Redis reports as `lua`.
    const fromApiOrScript = (command: MonitoredCommand): boolean => fromApi(command) || command.source === 'lua';
    monitor = await RedisMonitor.start(
      redis!.url,
      (command) => (command.name === 'XREAD' || command.name === 'XRANGE') && fromApiOrScript(command),
    );
    // 5 events every 40 ms for about 2.5 s.
    const BUILD = { steps: 60, stepMs: 40, tokensPerStep: 4 };
    const follow = async (count: number): Promise<{ xread: number; xrange: number }> => {
      const id = await start(BUILD);
      const key = eventsKey(id);
      const mark = monitor!.mark();
      const followers = range(count).map((i) => api.follow(id, i % 2 ? 'sse' : 'ndjson'));
      const received = await Promise.all(followers.map((follower) => follower.ended));
      const truth = await stored(id);
      for (const events of received)
        expect(auditDelivery(truth, events)).toMatchObject({
          delivered: truth.length,
          lost: 0,
          duplicated: 0,
          outOfOrder: 0,
          corrupted: 0,
        });
      const reads = monitor!.since(mark, (command) => RedisMonitor.readCursor(command, key) !== undefined);
      return {
        xread: reads.filter((command) => command.name === 'XREAD').length,
        xrange: reads.filter((command) => command.name === 'XRANGE').length,
      };
    };
    const one = await follow(1);
    const fifty = await follow(50);
    process.stdout.write(
      `fan-out: the api read a job of ${expectedBuildEvents(BUILD.steps, BUILD.tokensPerStep).length} events with ${one.xread} XREAD + ${one.xrange} XRANGE ` +
        `for 1 client, ${fifty.xread} XREAD + ${fifty.xrange} XRANGE for 50\n`,
    );
    // The shared reader reads each batch once, whatever the number of followers...
    expect(one.xread).toBeGreaterThan(10);
    expect(fifty.xread).toBeLessThanOrEqual(one.xread * 1.5 + 10);
    // ...and a follower costs a constant number of plain reads when it starts (its first page, the
    // follow's first read, at most one catch-up), not reads per event.
    expect(fifty.xrange).toBeLessThanOrEqual(3 * 50);
    expect(fifty.xread + fifty.xrange).toBeLessThan((one.xread + one.xrange) * 5);
  }, 60_000);
});
