import { randomUUID } from 'node:crypto';
import { AppProcess } from '../support/app-process.js';
import { BuildApi } from '../support/build-api.js';
import { freePort } from '../support/free-port.js';
import { pollUntil } from '../support/poll-until.js';
import { RedisServer } from '../support/redis-server.js';
import { prometheusSamples as samples } from '../support/prometheus-samples.js';

/** `GET /metrics` of a demo api that also runs the jobs (bullmq backend, real Redis). */

describe('metrics (bullmq backend)', () => {
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start({ appendOnly: true });
  });

  afterAll(async () => {
    await Promise.all(processes.map((app) => app.stop('SIGTERM', 5000)));
    await redis?.destroy();
  }, 30_000);

  it("counts the worker's writes, BullMQ's job counts, the bridge it leads, and Redis errors and reconnects", async () => {
    const env = { JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: redis!.url, JOB_QUEUE_PREFIX: `metrics-${randomUUID().slice(0, 8)}` };
    const [app] = await AppProcess.startAll(processes, [AppProcess.api(env)]);
    const scrape = async (): Promise<Map<string, number>> => samples(await (await fetch(`${app.url}/metrics`)).text());
    /** Scrapes until `check` holds (the counters move as the work happens), bounded. */
    const until = (check: (values: Map<string, number>) => boolean): Promise<Map<string, number>> => pollUntil(scrape, check);
    const builds = new BuildApi(app.url, 'api');
    const reports = new BuildApi(app.url, 'api', 'reports');
    const build = await builds.start({ steps: 3, stepMs: 0, tokensPerStep: 2 });
    const report = await reports.start({ pages: 2, pageMs: 0 });
    await builds.waitForEvent(build, (event) => event.type === 'completed');
    await reports.waitForEvent(report, (event) => event.type === 'completed');

    const values = await until(
      (current) =>
        current.get('job_queue_jobs{queue="reports",state="completed"}') === 1 &&
        current.get('job_queue_jobs{queue="jobs",state="completed"}') === 1,
    );
    expect(values.get('job_queue_jobs_enqueued_total{queue="jobs"}')).toBe(1);
    expect(values.get('job_queue_jobs_enqueued_total{queue="reports"}')).toBe(1);
    expect(values.get('job_queue_jobs_finished_total{queue="jobs",state="completed"}')).toBe(1);
    expect(values.get('job_queue_jobs_finished_total{queue="reports",state="completed"}')).toBe(1);
    // started + 3 steps + 6 tokens + completed; started + 2 x (progress, log) + completed.
    expect(values.get('job_queue_events_appended_total{queue="jobs"}')).toBe(11);
    expect(values.get('job_queue_events_appended_total{queue="reports"}')).toBe(6);
    expect(values.get('job_queue_append_batch_size_count')).toBeGreaterThanOrEqual(4);
    expect(values.get('job_queue_append_batch_size_sum')).toBe(17);
    expect(values.get('job_queue_jobs{queue="jobs",state="completed"}')).toBe(1);
    expect(values.get('job_queue_jobs{queue="reports",state="waiting"}')).toBe(0);
    expect(values.get('job_queue_events_delivered_total{delivery="polling"}')).toBeGreaterThanOrEqual(2);
    // The demo registers the reports queue: this process, alone, leads its foreign-worker bridge.
    const leading = await until((current) => current.get('job_queue_bridge_leading{queue="reports"}') === 1);
    expect(leading.get('job_queue_bridge_leading{queue="reports"}')).toBe(1);
    expect(leading.get('job_queue_bridge_lag_seconds{queue="reports"}')).toBe(0);

    // Redis away: reconnect attempts fail (errors); back: the clients reconnect.
    await redis!.stop();
    const down = await until((current) => (current.get('job_queue_redis_errors_total{connection="commands"}') ?? 0) > 0);
    expect(down.get('job_queue_redis_errors_total{connection="commands"}')).toBeGreaterThan(0);
    await redis!.restart();
    const after = await until(
      (current) =>
        (current.get('job_queue_redis_reconnects_total{connection="commands"}') ?? 0) > 0 &&
        (current.get('job_queue_redis_reconnects_total{connection="reader"}') ?? 0) > 0,
    );
    expect(after.get('job_queue_redis_reconnects_total{connection="commands"}')).toBeGreaterThan(0);
    expect(after.get('job_queue_redis_reconnects_total{connection="reader"}')).toBeGreaterThan(0);
    // Reachable again: a scrape of the job counts works.
    const back = await until((current) => current.get('job_queue_jobs{queue="jobs",state="completed"}') === 1);
    expect(back.get('job_queue_jobs{queue="jobs",state="completed"}')).toBe(1);
  }, 60_000);

  it('a worker serves its own metrics on METRICS_PORT: the writes happen there, the api counts the enqueue and the reads', async () => {
    const env = { JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: redis!.url, JOB_QUEUE_PREFIX: `metrics-${randomUUID().slice(0, 8)}` };
    const port = await freePort();
    const [api] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.worker({ ...env, METRICS_PORT: String(port) }),
    ]);
    const builds = new BuildApi(api.url, 'api');
    const build = await builds.start({ steps: 2, stepMs: 0 });
    await builds.waitForEvent(build, (event) => event.type === 'completed');
    const worker = samples(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    expect(worker.get('job_queue_events_appended_total{queue="jobs"}')).toBe(4);
    expect(worker.get('job_queue_jobs_finished_total{queue="jobs",state="completed"}')).toBe(1);
    expect(worker.get('job_queue_jobs_enqueued_total{queue="jobs"}')).toBeUndefined();
    const apiValues = samples(await (await fetch(`${api.url}/metrics`)).text());
    expect(apiValues.get('job_queue_jobs_enqueued_total{queue="jobs"}')).toBe(1);
    expect(apiValues.get('job_queue_events_appended_total{queue="jobs"}')).toBeUndefined();
    expect((await fetch(`http://127.0.0.1:${port}/builds`)).status).toBe(404);
  }, 60_000);
});
