import { startApiServer, type ApiServer } from './support/api-server.js';
import { ApiClient, readLines } from './support/http-client.js';
import { prometheusSamples as samples } from '../../../test/support/prometheus-samples.js';

/** `GET /metrics` of the demo api (memory backend): what the job queue counted, in Prometheus' text format. */

describe('metrics (memory backend)', () => {
  let server: ApiServer;
  let api: ApiClient;

  beforeAll(async () => {
    server = await startApiServer({ AUTH_TOKENS: 'alice:tokenA-m1' });
    api = new ApiClient(server.baseUrl, 'tokenA-m1');
  });

  afterAll(async () => {
    await server?.close();
  });

  const scrape = async (): Promise<{ text: string; values: Map<string, number> }> => {
    const response = await fetch(`${server.baseUrl}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    return { text, values: samples(text) };
  };

  it('counts enqueues, appends, terminal states, deliveries by kind, open streams and cancels by cause; no job id in any label', async () => {
    const ids: string[] = [];
    // Two builds followed to their end: one by SSE, one by NDJSON (2 steps, 1 token each: 6 events).
    for (const accept of ['text/event-stream', 'application/x-ndjson']) {
      const id = await api.startBuild({ steps: 2, stepMs: 0, tokensPerStep: 1 });
      ids.push(id);
      let lines = 0;
      for await (const line of readLines(await api.fetch(`/builds/${id}/events`, { headers: { Accept: accept } })))
        if (line.startsWith(accept === 'text/event-stream' ? 'id:' : '{')) lines++;
      expect(lines).toBe(6);
    }
    // One read by polling, one cancelled by request.
    const polled = await api.startBuild({ steps: 1, stepMs: 0 });
    ids.push(polled);
    await api.waitForEnd(polled);
    const cancelled = await api.startBuild({ steps: 100, stepMs: 1000 });
    ids.push(cancelled);
    expect((await api.cancel(cancelled)).status).toBe(202);
    // A follower that stays open while the scrape runs.
    const open = await api.startBuild({ steps: 100, stepMs: 1000 });
    ids.push(open);
    const abort = new AbortController();
    const stream = await api.fetch(`/builds/${open}/events`, { headers: { Accept: 'text/event-stream' }, signal: abort.signal });
    const reader = stream.body!.getReader();
    await reader.read(); // its headers and first bytes are out: the stream is open

    const { text, values } = await scrape();
    expect(values.get('job_queue_jobs_enqueued_total{queue="jobs"}')).toBe(5);
    expect(values.get('job_queue_jobs_finished_total{queue="jobs",state="completed"}')).toBe(3);
    expect(values.get('job_queue_jobs_finished_total{queue="jobs",state="cancelled"}')).toBe(1);
    expect(values.get('job_queue_cancels_total{cause="request"}')).toBe(1);
    expect(values.get('job_queue_events_delivered_total{delivery="sse"}')).toBeGreaterThanOrEqual(6);
    expect(values.get('job_queue_events_delivered_total{delivery="ndjson"}')).toBe(6);
    expect(values.get('job_queue_events_delivered_total{delivery="polling"}')).toBeGreaterThanOrEqual(3);
    expect(values.get('job_queue_followers{delivery="sse"}')).toBe(1);
    expect(values.get('job_queue_followers{delivery="ndjson"}')).toBe(0);
    expect(values.get('job_queue_jobs{queue="jobs",state="completed"}')).toBe(3);
    expect(values.get('job_queue_jobs{queue="jobs",state="cancelled"}')).toBe(1);
    expect(values.get('job_queue_jobs{queue="jobs",state="running"}')).toBe(1);
    // 6 + 6 + 3 events of the finished builds, started + cancelled of the cancelled one, at least started of the open one.
    expect(values.get('job_queue_events_appended_total{queue="jobs"}')).toBeGreaterThanOrEqual(18);
    expect(values.get('job_queue_event_delivery_delay_seconds_count{delivery="ndjson"}')).toBeGreaterThanOrEqual(1);
    for (const id of ids) expect(text).not.toContain(id);
    expect(text).not.toContain('alice');

    abort.abort();
    await reader.cancel().catch(() => undefined);
    await api.cancel(open);
  });

  it('a direct delivery whose client goes away counts as a cancel by disconnect', async () => {
    const abort = new AbortController();
    const response = await api.fetch('/builds?delivery=direct', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ steps: 100, stepMs: 1000 }),
      signal: abort.signal,
    });
    const id = response.headers.get('x-job-id')!;
    await response.body!.getReader().read();
    abort.abort();
    await api.waitForEnd(id);
    const deadline = Date.now() + 10_000;
    let value: number | undefined;
    while (Date.now() < deadline && !value) {
      value = (await scrape()).values.get('job_queue_cancels_total{cause="disconnect"}');
      if (!value) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(value).toBe(1);
  });
});

describe('metrics of the circuit breakers (memory backend)', () => {
  let server: ApiServer;

  beforeAll(async () => {
    server = await startApiServer({ JOB_CIRCUIT_BREAKER: 'build=2,60000,60000' });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('a breaker is 0 (closed) until its failures open it, then 2 (open), with its recent failures', async () => {
    const api = new ApiClient(server.baseUrl);
    const scrape = async (): Promise<Map<string, number>> => samples(await (await fetch(`${server.baseUrl}/metrics`)).text());
    expect((await scrape()).get('job_queue_circuit_breaker_state{name="build"}')).toBe(0);
    for (let i = 0; i < 2; i++) await api.waitForEnd(await api.startBuild({ steps: 1, stepMs: 0, failAtStep: 1 }));
    const values = await scrape();
    expect(values.get('job_queue_circuit_breaker_state{name="build"}')).toBe(2);
    expect(values.get('job_queue_circuit_breaker_recent_failures{name="build"}')).toBe(2);
  });
});
