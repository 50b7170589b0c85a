import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, readLines, type EventPage, type WireEvent } from '../support/build-api.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * One trace from the request on api A to the handler on a worker process: both are real processes
 * (the demo api with JOB_QUEUE_WORKER=false, and the demo worker), each with an OpenTelemetry SDK
 * preloaded (`otel-preload.mjs`: HTTP instrumentation, W3C propagator, every ended span written to
 * a file). The apps themselves register nothing: the library only uses @opentelemetry/api.
 */

const PRELOAD = fileURLToPath(new URL('./fixtures/otel-preload.mjs', import.meta.url));

/** A span as `otel-preload.mjs` writes it. */
interface SpanLine {
  process: string;
  name: string;
  kind: number;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  parentIsRemote?: boolean;
  attributes: Record<string, unknown>;
  status: { code: number };
}

const SPAN_KIND = { server: 1, producer: 3, consumer: 4 } as const;
const LIBRARY = 'nestjs-job-streams';

function readSpans(file: string): SpanLine[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as SpanLine);
}

/** `POST /builds` with optional extra headers; the job id. */
async function startBuild(api: BuildApi, headers: Record<string, string> = {}): Promise<string> {
  const response = await api.fetch('/builds', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ steps: 2, stepMs: 0, tokensPerStep: 1 }),
  });
  const text = await response.text();
  if (response.status !== 202) throw new Error(`POST /builds answered ${response.status} ${text}`);
  return (JSON.parse(text) as { jobId: string }).jobId;
}

/** Every event of the job by NDJSON (the stream closes after the terminal event). */
async function ndjsonEvents(api: BuildApi, id: string): Promise<WireEvent[]> {
  const response = await api.fetch(`/builds/${id}/events`, { headers: { Accept: 'application/x-ndjson' } });
  expect(response.status).toBe(200);
  const events: WireEvent[] = [];
  for await (const line of readLines(response)) if (line) events.push(JSON.parse(line) as WireEvent);
  return events;
}

describe('traces across processes: api A (no handlers) and a worker (bullmq backend)', () => {
  let redis: RedisServer | undefined;
  let dir: string;
  const processes: AppProcess[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start();
    dir = mkdtempSync(join(tmpdir(), 'traces-e2e-'));
  });

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('one trace id from the HTTP request on api A (traceparent sent or not) to the attempt span on the worker and on the events read from the api', async () => {
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: redis!.url,
      JOB_QUEUE_PREFIX: `tr-${randomUUID().slice(0, 8)}`,
      NODE_OPTIONS: `--import ${PRELOAD}`,
    };
    const apiSpans = join(dir, 'api.jsonl');
    const workerSpans = join(dir, 'worker.jsonl');
    const [apiProcess, workerProcess] = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false', OTEL_SPANS_FILE: apiSpans, OTEL_PROCESS_LABEL: 'api' }),
      AppProcess.worker({ ...env, OTEL_SPANS_FILE: workerSpans, OTEL_PROCESS_LABEL: 'worker' }),
    ]);
    const api = new BuildApi(apiProcess.url, 'api A');

    // 1. The client sends its own trace context.
    const clientTraceId = randomBytes(16).toString('hex');
    const clientSpanId = randomBytes(8).toString('hex');
    const traced = await startBuild(api, { traceparent: `00-${clientTraceId}-${clientSpanId}-01` });
    // 2. The client sends none: the api's request span starts the trace.
    const untold = await startBuild(api);

    const tracedEvents = await ndjsonEvents(api, traced);
    expect(tracedEvents.map((event) => event.type)).toEqual(['started', 'step', 'token', 'step', 'token', 'completed']);
    for (const event of tracedEvents) expect((event as WireEvent & { traceId?: string }).traceId).toBe(clientTraceId);
    const polled = (await (await api.fetch(`/builds/${traced}/events?delivery=polling`)).json()) as EventPage;
    expect(polled.done).toBe(true);
    expect(polled.events.map((event) => (event as WireEvent & { traceId?: string }).traceId)).toEqual(
      tracedEvents.map(() => clientTraceId),
    );

    const untoldEvents = await ndjsonEvents(api, untold);
    expect(untoldEvents.at(-1)?.type).toBe('completed');
    const untoldTraceId = (untoldEvents[0] as WireEvent & { traceId?: string }).traceId;
    expect(untoldTraceId).toMatch(/^[0-9a-f]{32}$/);
    expect(untoldTraceId).not.toBe(clientTraceId);
    for (const event of untoldEvents) expect((event as WireEvent & { traceId?: string }).traceId).toBe(untoldTraceId);

    // Every span that ended is in the files once the processes have exited (the worker finishes its attempts first).
    await Promise.all([apiProcess.stop('SIGTERM', 10_000), workerProcess.stop('SIGTERM', 10_000)]);
    const onApi = readSpans(apiSpans);
    const onWorker = readSpans(workerSpans);

    for (const [jobId, traceId, remoteParent] of [
      [traced, clientTraceId, clientSpanId],
      [untold, untoldTraceId!, undefined],
    ] as const) {
      const enqueue = onApi.find(
        (span) => span.scope === LIBRARY && span.name === 'enqueue' && span.attributes['messaging.message.id'] === jobId,
      );
      expect(enqueue).toMatchObject({ kind: SPAN_KIND.producer, traceId });
      const request = onApi.find((span) => span.spanId === enqueue!.parentSpanId);
      // The HTTP server span of POST /builds, a child of the client's span when it sent one.
      expect(request).toMatchObject({ kind: SPAN_KIND.server, traceId });
      expect(request!.parentSpanId).toBe(remoteParent);
      expect(JSON.stringify(request!.attributes)).toContain('POST');

      const attempt = onWorker.find(
        (span) => span.scope === LIBRARY && span.name === 'attempt' && span.attributes['messaging.message.id'] === jobId,
      );
      expect(attempt).toMatchObject({
        kind: SPAN_KIND.consumer,
        traceId,
        parentSpanId: enqueue!.spanId,
        parentIsRemote: true,
        attributes: { 'messaging.destination.name': 'jobs', 'job.name': 'build', 'job.attempt': 1, 'messaging.system': 'bullmq' },
      });
      const finish = onWorker.find(
        (span) => span.scope === LIBRARY && span.name === 'finish' && span.attributes['messaging.message.id'] === jobId,
      );
      expect(finish).toMatchObject({ traceId, parentSpanId: attempt!.spanId, attributes: { 'job.state': 'completed' } });
    }
    // No attempt ran on the api (it runs no handlers).
    expect(onApi.filter((span) => span.name === 'attempt')).toEqual([]);
  }, 60_000);
});
