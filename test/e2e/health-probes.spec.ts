import { randomUUID } from 'node:crypto';
import { AppProcess } from '../support/app-process.js';
import { pollUntil } from '../support/poll-until.js';
import { RedisFaultProxy } from '../support/redis-fault-proxy.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * The demo's terminus probes: `GET /health/live` (the process serves HTTP; a Redis outage does
 * not fail it) and `GET /health/ready` (the library's `JobQueueHealthIndicator`: backend
 * reachable, bridges keeping up), next to the plain `GET /health` whose contract is unchanged.
 */

interface TerminusBody {
  status: 'ok' | 'error';
  info?: Record<string, Record<string, unknown>>;
  error?: Record<string, Record<string, unknown>>;
  details: Record<string, Record<string, unknown>>;
}

async function probe(app: AppProcess, path: string): Promise<{ status: number; body: TerminusBody }> {
  const response = await fetch(`${app.url}${path}`);
  return { status: response.status, body: (await response.json()) as TerminusBody };
}

/** Asks `path` until it answers `status` (the api notices Redis' state on its own schedule). */
function until(app: AppProcess, path: string, status: number): Promise<{ status: number; body: TerminusBody }> {
  return pollUntil(
    () => probe(app, path),
    (answer) => answer.status === status,
  );
}

describe('health probes built with @nestjs/terminus (demo api)', () => {
  const SECRET = randomUUID().replace(/-/g, '');
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start({ password: SECRET });
  });

  /** A bullmq api on the test's Redis, with a prefix of its own. */
  function bullmqEnv(): Record<string, string> {
    return {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: redis!.url,
      JOB_QUEUE_PREFIX: `probe-${randomUUID().slice(0, 8)}`,
      AUTH_TOKENS: 'alice:tokenA',
    };
  }

  afterAll(async () => {
    await Promise.all(processes.map((app) => app.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it('memory backend: live and ready answer 200 without a token; ready names the backend', async () => {
    const [api] = await AppProcess.startAll(processes, [AppProcess.api({ AUTH_TOKENS: 'alice:tokenA' })]);
    const live = await probe(api, '/health/live');
    expect(live).toEqual({ status: 200, body: { status: 'ok', info: {}, error: {}, details: {} } });
    const ready = await probe(api, '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.details.jobQueue).toEqual({ status: 'up', backend: 'memory', connections: {}, bridges: [] });
  });

  it('bullmq backend: ready goes down (503) while Redis is away and up again after, without the password; live stays 200', async () => {
    const [api] = await AppProcess.startAll(processes, [AppProcess.api(bullmqEnv())]);
    const ready = await until(api, '/health/ready', 200);
    expect(ready.status).toBe(200);
    expect(ready.body.details.jobQueue).toMatchObject({
      status: 'up',
      backend: 'bullmq',
      connections: { commands: 'ready', reader: 'ready', cancels: 'ready' },
    });
    // The demo registers the reports queue: this api, alone, leads its bridge (once its lease is taken).
    expect(ready.body.details.jobQueue.bridges).toEqual(expect.any(Array));

    await redis!.stop();
    const down = await until(api, '/health/ready', 503);
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('error');
    expect(down.body.error?.jobQueue).toMatchObject({ status: 'down', backend: 'bullmq', message: expect.any(String) });
    expect(JSON.stringify(down.body)).not.toContain(SECRET);
    expect(await probe(api, '/health/live')).toMatchObject({ status: 200, body: { status: 'ok' } });
    // The plain route keeps its contract.
    const plain = await fetch(`${api.url}/health`);
    expect(plain.status).toBe(503);
    expect(await plain.json()).toMatchObject({ status: 'error', backend: 'bullmq' });

    await redis!.restart();
    const back = await until(api, '/health/ready', 200);
    expect(back.status).toBe(200);
    expect(back.body.details.jobQueue).toMatchObject({ status: 'up', backend: 'bullmq' });
  }, 60_000);

  it('bullmq backend: with Redis hung (SIGSTOP), ready and /health answer 503 within 1 s, every time; live stays 200', async () => {
    const [api] = await AppProcess.startAll(processes, [AppProcess.api(bullmqEnv())]);
    await until(api, '/health/ready', 200);
    const timed = async (path: string): Promise<{ status: number; ms: number; retryAfter: string | null; text: string }> => {
      const started = performance.now();
      const response = await fetch(`${api.url}${path}`);
      const text = await response.text();
      return { status: response.status, ms: performance.now() - started, retryAfter: response.headers.get('retry-after'), text };
    };
    redis!.pause();
    try {
      // The connections stay open: ioredis only gives up on a command after its 10 s timeout.
      // Several probes in a row, as a prober sends them, each within its 1 s budget.
      for (let probeNumber = 0; probeNumber < 3; probeNumber++) {
        for (const path of ['/health/ready', '/health']) {
          const answer = await timed(path);
          expect({ path, status: answer.status, retryAfter: answer.retryAfter }).toEqual({ path, status: 503, retryAfter: '1' });
          expect(answer.ms).toBeLessThan(1000);
          expect(answer.text).not.toContain(SECRET);
        }
        const live = await timed('/health/live');
        expect(live.status).toBe(200);
        expect(live.ms).toBeLessThan(1000);
      }
    } finally {
      redis!.resume();
    }
    expect((await until(api, '/health/ready', 200)).status).toBe(200);
    expect((await fetch(`${api.url}/health`)).status).toBe(200);
  }, 60_000);

  it("bullmq backend: ready goes down while only the shared event reader's connection is away (Redis answers), and up once it is back", async () => {
    const { hostname, port } = new URL(redis!.url);
    const proxy = await RedisFaultProxy.start({ host: hostname, port: Number(port) });
    try {
      const prefix = `probe-${randomUUID().slice(0, 8)}`;
      const env = {
        JOB_QUEUE_BACKEND: 'bullmq',
        REDIS_URL: proxy.urlFor(redis!.url),
        JOB_QUEUE_PREFIX: prefix,
        AUTH_TOKENS: 'alice:tokenA',
      };
      const [api] = await AppProcess.startAll(processes, [AppProcess.api(env)]);
      expect((await until(api, '/health/ready', 200)).body.details.jobQueue).toMatchObject({ connections: { reader: 'ready' } });

      // Its connection is closed at every attempt; every other connection of the api works.
      proxy.refuse(`${prefix}:reader`);
      const down = await until(api, '/health/ready', 503);
      expect(down.body.error?.jobQueue).toMatchObject({
        status: 'down',
        backend: 'bullmq',
        connections: { commands: 'ready' },
        message: expect.stringContaining("The shared event reader's Redis connection is"),
      });
      expect(JSON.stringify(down.body)).not.toContain(SECRET);
      // Redis itself answers: the plain route, which only pings it, stays up.
      expect((await fetch(`${api.url}/health`)).status).toBe(200);

      proxy.admitAll();
      const back = await until(api, '/health/ready', 200);
      expect(back.body.details.jobQueue).toMatchObject({ status: 'up', connections: { reader: 'ready' } });
    } finally {
      await proxy.stop();
    }
  }, 60_000);
});
