import { randomUUID } from 'node:crypto';
import { AppProcess } from '../support/app-process.js';
import { RedisServer } from '../support/redis-server.js';

/** bull-board at /admin/queues on the demo api (bullmq): admins only, read-only, our jobs as BullMQ sees them. */

interface BoardJob {
  id: string;
  name: string;
  data: unknown;
  progress: unknown;
  returnValue: unknown;
}

interface BoardQueues {
  queues: Array<{ name: string; readOnlyMode: boolean; jobs: BoardJob[] }>;
}

const basic = (owner: string, token: string): string => `Basic ${Buffer.from(`${owner}:${token}`).toString('base64')}`;

describe('queue board (bull-board) on the demo api', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];
  let api: AppProcess;

  beforeAll(async () => {
    redis = await RedisServer.start();
    [api] = await AppProcess.startAll(processes, [
      AppProcess.api({
        JOB_QUEUE_BACKEND: 'bullmq',
        REDIS_URL: redis.url,
        JOB_QUEUE_PREFIX: `board-${randomUUID().slice(0, 8)}`,
        AUTH_TOKENS: 'alice:tokenA-4d4d,bob:tokenB-5e5e',
        ADMIN_OWNERS: 'alice',
      }),
    ]);
  });

  afterAll(async () => {
    await Promise.all(processes.map((app) => app.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it('asks a browser for credentials; refuses owners who are not admins and tokens under another name', async () => {
    const anonymous = await fetch(`${api.url}/admin/queues`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm="queues"/);
    expect((await fetch(`${api.url}/admin/queues`, { headers: { Authorization: 'Bearer tokenB-5e5e' } })).status).toBe(403);
    expect((await fetch(`${api.url}/admin/queues`, { headers: { Authorization: basic('bob', 'tokenB-5e5e') } })).status).toBe(403);
    expect((await fetch(`${api.url}/admin/queues`, { headers: { Authorization: basic('bob', 'tokenA-4d4d') } })).status).toBe(401);
    const page = await fetch(`${api.url}/admin/queues`, { headers: { Authorization: basic('alice', 'tokenA-4d4d') } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
  });

  it('shows the jobs and reports queues, read-only, with a finished build and report as they ran (name, data, progress, result)', async () => {
    const headers = { Authorization: 'Bearer tokenA-4d4d', 'Content-Type': 'application/json' };
    const start = async (path: string, body: unknown): Promise<string> => {
      const response = await fetch(`${api.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
      return ((await response.json()) as { jobId: string }).jobId;
    };
    const build = await start('/builds', { steps: 2, stepMs: 0, tokensPerStep: 1 });
    const report = await start('/reports', { pages: 2, pageMs: 0 });
    for (const [resource, id] of [
      ['builds', build],
      ['reports', report],
    ] as const) {
      const page = await fetch(`${api.url}/${resource}/${id}/events?delivery=polling&waitMs=10000&after=0`, { headers });
      expect(page.status).toBe(200);
    }
    // The stream's terminal event is written before BullMQ's completion: wait for BullMQ's own view.
    const completed = async (queue: string, id: string): Promise<BoardQueues['queues']> => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const answer = await fetch(`${api.url}/admin/queues/api/queues?activeQueue=${queue}&status=completed&page=1`, { headers });
        expect(answer.status).toBe(200);
        const { queues } = (await answer.json()) as BoardQueues;
        if (queues.find((entry) => entry.name === queue)?.jobs.some((job) => job.id === id) || Date.now() > deadline) return queues;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const queues = await completed('jobs', build);
    expect(queues.map((queue) => queue.name).sort()).toEqual(['jobs', 'reports']);
    expect(queues.every((queue) => queue.readOnlyMode)).toBe(true);
    const jobs = queues.find((queue) => queue.name === 'jobs')!.jobs;
    expect(jobs.find((job) => job.id === build)).toMatchObject({
      name: 'build',
      data: { steps: 2, stepMs: 0, tokensPerStep: 1 },
      returnValue: { steps: 2 },
      // A @JobHandler job's BullMQ progress: the last event it emitted and how many.
      progress: { eventId: expect.any(String), type: 'token', events: 4 },
    });
    const reports = (await completed('reports', report)).find((queue) => queue.name === 'reports')!.jobs;
    expect(reports.find((job) => job.id === report)).toMatchObject({
      name: 'report',
      data: { pages: 2, pageMs: 0 },
      returnValue: { pages: 2 },
      progress: { page: 2, pages: 2 },
    });
  });
});
