import { randomUUID } from 'node:crypto';
import { JobStreamsClient, type JobStreamEvent, type RetryInfo } from 'nestjs-job-streams-client';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, assertOrderedStream, expectedBuildEvents, readLines, typesAndData, type WireEvent } from '../support/build-api.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * The typed client across real processes: two demo apis (no handlers) and a worker on one Redis.
 * A follow survives the death of the api it streams from, and a 503 while Redis is away, resuming
 * from its last event: every event once, in order.
 */

async function allEvents(api: BuildApi, id: string): Promise<WireEvent[]> {
  const events: WireEvent[] = [];
  for await (const line of readLines(await api.fetch(`/builds/${id}/events`))) events.push(JSON.parse(line) as WireEvent);
  return events;
}

const withoutTs = (events: WireEvent[]): JobStreamEvent[] => events.map(({ id, type, data }) => ({ id, type, data }));

describe('JobStreamsClient across processes (bullmq, 2 apis, 1 worker)', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];
  let env: Record<string, string>;

  beforeAll(async () => {
    // Append-only, so that a restart keeps the jobs and their events.
    redis = await RedisServer.start({ appendOnly: true });
    env = { JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: redis.url, JOB_QUEUE_PREFIX: `client-${randomUUID().slice(0, 8)}` };
  });

  afterAll(async () => {
    await Promise.all(processes.map((app) => app.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it('the api streaming the build is SIGKILLed: the follow resumes on the other one from its last event', async () => {
    const [apiA, apiB] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.worker(env),
    ]);
    const b = new BuildApi(apiB.url, 'api B');
    const id = await new BuildApi(apiA.url, 'api A').start({ steps: 12, stepMs: 100, tokensPerStep: 2 });
    const retries: RetryInfo[] = [];
    const client = new JobStreamsClient({
      baseUrl: [apiA.url, apiB.url],
      backoff: { initialMs: 20 },
      onRetry: (retry) => retries.push(retry),
    });
    const received: JobStreamEvent[] = [];
    for await (const event of client.follow('builds', id)) {
      received.push(event);
      if (event.type === 'step' && (event.data as { index: number }).index === 4) await apiA.stop('SIGKILL');
    }
    const all = await allEvents(b, id);
    assertOrderedStream(all, 'build');
    expect(typesAndData(all)).toEqual(expectedBuildEvents(12, 2));
    expect(received).toEqual(withoutTs(all));
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0]).toMatchObject({ baseUrl: apiB.url, after: expect.any(String) });
  }, 60_000);

  it('Redis goes away while the stream breaks: the other api answers 503 with Retry-After, the client waits and goes on once Redis is back', async () => {
    // Two fresh apis; the worker of the first test runs the build.
    const [apiA, apiB] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
    ]);
    const b = new BuildApi(apiB.url, 'api B');
    const id = await new BuildApi(apiA.url, 'api A').start({ steps: 10, stepMs: 100 });
    let sawUnavailable!: () => void;
    const unavailable = new Promise<void>((resolve) => (sawUnavailable = resolve));
    const retries: RetryInfo[] = [];
    const client = new JobStreamsClient({
      baseUrl: [apiA.url, apiB.url],
      backoff: { initialMs: 20, maxMs: 2000 },
      onRetry: (retry) => {
        retries.push(retry);
        if (retry.reason === 'HTTP 503') sawUnavailable();
      },
    });
    const received: JobStreamEvent[] = [];
    const following = (async () => {
      for await (const event of client.follow('builds', id)) {
        received.push(event);
        if (event.type === 'step' && (event.data as { index: number }).index === 3) {
          await redis!.stop();
          await apiA.stop('SIGKILL');
        }
      }
    })();
    await unavailable;
    await redis!.restart();
    await following;
    const all = await allEvents(b, id);
    assertOrderedStream(all, 'build');
    expect(typesAndData(all)).toEqual(expectedBuildEvents(10, 0));
    expect(received).toEqual(withoutTs(all));
    // The api's Retry-After (1 s) was honoured: the retry after the 503 waited at least that long.
    const after503 = retries.find((retry) => retry.reason === 'HTTP 503')!;
    expect(after503.delayMs).toBeGreaterThanOrEqual(1000);
  }, 90_000);
});
