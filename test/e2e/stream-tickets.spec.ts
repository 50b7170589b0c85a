import { randomUUID } from 'node:crypto';
import { AppProcess } from '../support/app-process.js';
import { assertOrderedStream, expectedBuildEvents, followWithEventSource, typesAndData } from '../support/build-api.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * A stream ticket issued by one api is accepted by another (no shared session state: both derive
 * the key from the same configuration), with a real EventSource that reconnects with the ticket.
 */
describe('stream tickets across instances (bullmq, 2 apis, 1 worker)', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start();
  });

  afterAll(async () => {
    await Promise.all(processes.map((app) => app.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it.each<{ keyFrom: string; extra: Record<string, string> }>([
    { keyFrom: 'AUTH_TOKENS', extra: {} },
    { keyFrom: 'STREAM_TICKET_SECRET', extra: { STREAM_TICKET_SECRET: randomUUID() + randomUUID() } },
  ])(
    'key from $keyFrom: issued by api A, an EventSource on api B follows the build to its end, token-free',
    async ({ extra }) => {
      const env = {
        JOB_QUEUE_BACKEND: 'bullmq',
        REDIS_URL: redis!.url,
        JOB_QUEUE_PREFIX: `tickets-${randomUUID().slice(0, 8)}`,
        AUTH_TOKENS: 'alice:tokenA-5e6f',
        ...extra,
      };
      const [apiA, apiB] = await AppProcess.startAll(processes, [
        AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
        AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
        AppProcess.worker(env),
      ]);
      const auth = { Authorization: 'Bearer tokenA-5e6f' };
      const started = await fetch(`${apiA.url}/builds`, {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ steps: 4, stepMs: 50, tokensPerStep: 1 }),
      });
      const { jobId } = (await started.json()) as { jobId: string };
      const issued = await fetch(`${apiA.url}/builds/${jobId}/ticket`, { method: 'POST', headers: auth });
      expect(issued.status).toBe(201);
      const { ticket } = (await issued.json()) as { ticket: string };
      const run = await followWithEventSource(`${apiB.url}/builds/${jobId}/events?ticket=${encodeURIComponent(ticket)}`);
      assertOrderedStream(run.events, 'build');
      expect(typesAndData(run.events)).toEqual(expectedBuildEvents(4, 1));
      // The reconnect after the terminal event (with the same ticket) got 204, so the EventSource stopped.
      expect(run.requests.map((request) => request.status)).toEqual([200, 204]);
    },
    60_000,
  );
});
