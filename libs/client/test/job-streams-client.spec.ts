import { createServer, request as httpRequest, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JobStreamError, JobStreamsClient, type JobStreamEvent, type RetryInfo } from 'nestjs-job-streams-client';
import { startApiServer, type ApiServer } from '../../../apps/api/test/support/api-server.js';

/** The client against the demo api (memory backend, in this process). */

const TOKEN = 'tokenA';

async function startBuild(server: ApiServer, body: Record<string, unknown>): Promise<string> {
  const response = await fetch(`${server.baseUrl}/builds`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { jobId: string }).jobId;
}

/** Every event of a job as the api's NDJSON gives it (once it has ended). */
async function allEvents(server: ApiServer, id: string): Promise<JobStreamEvent[]> {
  const response = await fetch(`${server.baseUrl}/builds/${id}/events`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  return (await response.text())
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as JobStreamEvent);
}

async function collect(events: AsyncIterable<JobStreamEvent>): Promise<JobStreamEvent[]> {
  const received: JobStreamEvent[] = [];
  for await (const event of events) received.push(event);
  return received;
}

const withoutTs = (events: JobStreamEvent[]): JobStreamEvent[] => events.map(({ id, type, data }) => ({ id, type, data }));

describe('JobStreamsClient against the demo api', () => {
  let server: ApiServer;

  beforeAll(async () => {
    server = await startApiServer({ AUTH_TOKENS: `alice:${TOKEN}` });
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each(['sse', 'polling', 'auto'] as const)(
    '%s: every event of a running build once, in order, ending with the terminal event',
    async (transport) => {
      const id = await startBuild(server, { steps: 4, stepMs: 30, tokensPerStep: 3 });
      const client = new JobStreamsClient({ baseUrl: server.baseUrl, token: () => TOKEN, transport, pollWaitMs: 1000 });
      const received = await collect(client.follow('builds', id));
      const all = await allEvents(server, id);
      expect(all.at(-1)?.type).toBe('completed');
      // Polling pages carry `ts`; SSE frames do not.
      expect(received).toEqual(transport === 'polling' ? all : withoutTs(all));
    },
  );

  it('resumes after a given event id, and a follow of an ended job from its terminal event yields nothing', async () => {
    const id = await startBuild(server, { steps: 3, stepMs: 0, tokensPerStep: 1 });
    const client = new JobStreamsClient({ baseUrl: server.baseUrl, token: TOKEN });
    const all = await collect(client.follow('builds', id));
    expect(await collect(client.follow('builds', id, { after: all[2].id }))).toEqual(all.slice(3));
    expect(await collect(client.follow('builds', id, { after: all.at(-1)!.id }))).toEqual([]);
  });

  it('breaking out of the loop ends the follow; so does its signal', async () => {
    const id = await startBuild(server, { steps: 50, stepMs: 50 });
    const client = new JobStreamsClient({ baseUrl: server.baseUrl, token: TOKEN });
    for await (const event of client.follow('builds', id)) {
      expect(event.type).toBe('started');
      break;
    }
    const abort = new AbortController();
    const seen: string[] = [];
    for await (const event of client.follow('builds', id, { signal: abort.signal })) {
      seen.push(event.type);
      if (event.type === 'step') abort.abort();
    }
    expect(seen).toEqual(['started', 'step']);
  });

  it('refusals end the follow with a JobStreamError carrying the status: unknown job (404), bad cursor (400), no token (401)', async () => {
    const id = await startBuild(server, { steps: 1, stepMs: 0 });
    const client = new JobStreamsClient({ baseUrl: server.baseUrl, token: TOKEN });
    await expect(collect(client.follow('builds', 'no-such-job'))).rejects.toMatchObject({ name: 'JobStreamError', status: 404 });
    await expect(collect(client.follow('builds', id, { after: 'not-a-cursor' }))).rejects.toMatchObject({ status: 400 });
    const anonymous = new JobStreamsClient({ baseUrl: server.baseUrl });
    const refused = collect(anonymous.follow('builds', id));
    await expect(refused).rejects.toBeInstanceOf(JobStreamError);
    await expect(refused).rejects.toMatchObject({ status: 401 });
  });

  describe('behind a proxy that does not pass an event stream (it sends SSE answers as text/plain)', () => {
    let proxy: Server;
    let proxyUrl: string;

    beforeAll(async () => {
      const target = new URL(server.baseUrl);
      proxy = createServer((incoming, outgoing) => {
        const forwarded = httpRequest(
          { host: target.hostname, port: target.port, path: incoming.url, method: incoming.method, headers: incoming.headers },
          (answer) => {
            const headers = { ...answer.headers };
            if (/event-stream/.test(String(headers['content-type']))) headers['content-type'] = 'text/plain';
            outgoing.writeHead(answer.statusCode ?? 502, headers);
            answer.pipe(outgoing);
          },
        );
        incoming.pipe(forwarded);
      });
      await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
      proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    });

    it('auto falls back to long-polling and still gets every event once', async () => {
      const id = await startBuild(server, { steps: 3, stepMs: 20, tokensPerStep: 2 });
      const client = new JobStreamsClient({ baseUrl: proxyUrl, token: TOKEN, pollWaitMs: 1000 });
      const received = await collect(client.follow('builds', id));
      expect(received).toEqual(await allEvents(server, id));
    });

    it('sse alone refuses it with a clear error', async () => {
      const id = await startBuild(server, { steps: 1, stepMs: 0 });
      const client = new JobStreamsClient({ baseUrl: proxyUrl, token: TOKEN, transport: 'sse' });
      await expect(collect(client.follow('builds', id))).rejects.toThrow(/Expected an event stream/);
    });
  });

  it('an instance that is down is skipped: the follow goes on on the next one, and says so through onRetry', async () => {
    const id = await startBuild(server, { steps: 2, stepMs: 0 });
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const retries: RetryInfo[] = [];
    const client = new JobStreamsClient({
      baseUrl: [deadUrl, server.baseUrl],
      token: TOKEN,
      backoff: { initialMs: 10 },
      onRetry: (retry) => retries.push(retry),
    });
    const received = await collect(client.follow('builds', id));
    expect(received).toEqual(withoutTs(await allEvents(server, id)));
    expect(retries).toEqual([expect.objectContaining({ attempt: 1, baseUrl: server.baseUrl, after: undefined })]);
  });

  it('gives up after maxRetries failed tries in a row', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const client = new JobStreamsClient({ baseUrl: deadUrl, maxRetries: 2, backoff: { initialMs: 5 } });
    await expect(collect(client.follow('builds', 'x'))).rejects.toThrow(/Gave up following builds\/x after 3 failed tries/);
  });

  it('an abort while a replayed chunk is being handed out stops at once: nothing after the event it fired on', async () => {
    const id = await startBuild(server, { steps: 3, stepMs: 0, tokensPerStep: 3 });
    const client = new JobStreamsClient({ baseUrl: server.baseUrl, token: TOKEN });
    await collect(client.follow('builds', id)); // ended: a new follow gets everything in one chunk
    for (const transport of ['sse', 'polling'] as const) {
      const abort = new AbortController();
      const seen: string[] = [];
      for await (const event of new JobStreamsClient({ baseUrl: server.baseUrl, token: TOKEN, transport }).follow('builds', id, {
        signal: abort.signal,
      })) {
        seen.push(event.type);
        if (seen.length === 2) abort.abort();
      }
      expect({ transport, seen }).toEqual({ transport, seen: ['started', 'step'] });
    }
  });

  describe('against servers that misbehave', () => {
    const servers: Server[] = [];
    const serve = async (handler: RequestListener): Promise<string> => {
      const fake = createServer(handler);
      servers.push(fake);
      await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    };

    afterAll(async () => {
      for (const fake of servers) {
        fake.closeAllConnections();
        await new Promise((resolve) => fake.close(resolve));
      }
    });

    it('a stream that goes silent (a half-open connection) is given up after idleTimeoutMs and resumed elsewhere', async () => {
      const silent = await serve((_request, response) => {
        response.writeHead(200, { 'Content-Type': 'text/event-stream' });
        response.write(': hello\n\n'); // then nothing, ever
      });
      const id = await startBuild(server, { steps: 2, stepMs: 0 });
      const retries: RetryInfo[] = [];
      const client = new JobStreamsClient({
        baseUrl: [silent, server.baseUrl],
        token: TOKEN,
        idleTimeoutMs: 300,
        backoff: { initialMs: 10 },
        onRetry: (retry) => retries.push(retry),
      });
      expect(await collect(client.follow('builds', id))).toEqual(withoutTs(await allEvents(server, id)));
      expect(retries.map((retry) => retry.reason)).toEqual(['no data for 300 ms']);
    });

    it('event data that is not JSON ends the follow with a JobStreamError instead of retrying it forever', async () => {
      const garbled = await serve((_request, response) => {
        response.writeHead(200, { 'Content-Type': 'text/event-stream' });
        response.write('id: 1-0\nevent: started\ndata: {"attempt":\n\n');
      });
      const client = new JobStreamsClient({ baseUrl: garbled });
      await expect(collect(client.follow('builds', 'x'))).rejects.toThrow(/Malformed event data/);
    });
  });
});
