// Drives the fresh application's HTTP API (`BASE_URL`) with the packed nestjs-job-streams-client,
// as a user's client would, and prints what it saw as one JSON object for the test to compare:
// a report followed over SSE to its end, the same report resumed from two cursors, a report
// cancelled while it runs, then the health check and the SSE delivery counter of the metrics.
import { JobStreamsClient, SseParser, type JobStreamEvent } from 'nestjs-job-streams-client';

const base = process.env.BASE_URL;
if (!base) throw new Error('BASE_URL is required');
// No retries: a refusal or a dropped stream fails the run instead of being papered over.
const client = new JobStreamsClient({ baseUrl: base, transport: 'sse', maxRetries: 0 });

async function post(path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const response = await fetch(base + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function start(data: { pages: number; holdAfterPage?: number }): Promise<string> {
  const { status, body } = await post('/reports', data);
  if (status !== 202) throw new Error(`POST /reports answered ${status}: ${JSON.stringify(body)}`);
  return (body as { jobId: string }).jobId;
}

async function follow(id: string, after?: string): Promise<JobStreamEvent[]> {
  const events: JobStreamEvent[] = [];
  for await (const event of client.follow('reports', id, { after })) events.push(event);
  return events;
}

/** One plain SSE request with `?after=` (no `Last-Event-ID`): its status and its events. */
async function sseAfter(id: string, after: string): Promise<{ status: number; events: JobStreamEvent[] }> {
  const response = await fetch(`${base}/reports/${encodeURIComponent(id)}/events?after=${encodeURIComponent(after)}`, {
    headers: { Accept: 'text/event-stream' },
  });
  const frames = new SseParser().push(await response.text());
  return {
    status: response.status,
    events: frames.map((frame) => ({ id: frame.id ?? '', type: frame.event, data: JSON.parse(frame.data) })),
  };
}

const reportId = await start({ pages: 2 });
const report = await follow(reportId);
const resumed = await follow(reportId, report[2].id); // the client sends Last-Event-ID
const afterQuery = await sseAfter(reportId, report[4].id);
const atEnd = await sseAfter(reportId, report[report.length - 1].id);

const heldId = await start({ pages: 3, holdAfterPage: 1 });
const held: JobStreamEvent[] = [];
let cancel: { status: number; body: unknown } | undefined;
for await (const event of client.follow('reports', heldId)) {
  held.push(event);
  // The processor now waits for its abort signal: cancel it, from this api instance.
  if (event.type === 'log') cancel = await post(`/reports/${encodeURIComponent(heldId)}/cancel`);
}
const cancelAgain = await post(`/reports/${encodeURIComponent(heldId)}/cancel`);

const healthResponse = await fetch(`${base}/health`);
const health = { status: healthResponse.status, body: await healthResponse.json() };
const metricsResponse = await fetch(`${base}/metrics`);
// This process's SSE writes: 6 + 3 + 1 events of the report (the 204 wrote none), 4 of the cancelled one.
const sseDelivered = /^job_queue_events_delivered_total\{delivery="sse"\} (\d+)$/m.exec(await metricsResponse.text())?.[1];

console.log(JSON.stringify({ report, resumed, afterQuery, atEnd, held, cancel, cancelAgain: cancelAgain.status, health, sseDelivered }));
