import { startApiServer, type ApiServer } from './support/api-server.js';
import { ApiClient } from './support/http-client.js';

/**
 * Stream tickets: `POST /builds/:id/ticket` (authenticated) gives a short-lived ticket that reads
 * that one job's events with `?ticket=` instead of the bearer token (for EventSource), and nothing else.
 */

const TOKENS = 'alice:tokenA-1f2e,bob:tokenB-9c8d';

async function ticketFor(server: ApiServer, path: string, token: string): Promise<Response> {
  return fetch(`${server.baseUrl}${path}/ticket`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
}

async function issue(server: ApiServer, path: string, token = 'tokenA-1f2e'): Promise<{ ticket: string; expiresAt: number }> {
  const response = await ticketFor(server, path, token);
  expect(response.status).toBe(201);
  return (await response.json()) as { ticket: string; expiresAt: number };
}

describe('stream tickets', () => {
  let server: ApiServer;
  let alice: ApiClient;
  let bob: ApiClient;

  beforeAll(async () => {
    server = await startApiServer({ AUTH_TOKENS: TOKENS });
    alice = new ApiClient(server.baseUrl, 'tokenA-1f2e');
    bob = new ApiClient(server.baseUrl, 'tokenB-9c8d');
  });

  afterAll(async () => {
    await server?.close();
  });

  it('a ticket reads its job by SSE, NDJSON and polling without any token, and says when it expires', async () => {
    const id = await alice.startBuild({ steps: 2, stepMs: 0, tokensPerStep: 1 });
    const events = await alice.waitForEnd(id);
    const before = Date.now();
    const { ticket, expiresAt } = await issue(server, `/builds/${id}`);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 300_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 300_000);
    expect(ticket).not.toContain('tokenA');
    const url = `${server.baseUrl}/builds/${id}/events?ticket=${encodeURIComponent(ticket)}`;

    const sse = await fetch(url, { headers: { Accept: 'text/event-stream' } });
    expect(sse.status).toBe(200);
    expect((await sse.text()).match(/^id: /gm)).toHaveLength(events.length);
    const ndjson = await fetch(url);
    expect(
      (await ndjson.text())
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as unknown),
    ).toEqual(events);
    const polling = await fetch(`${url}&delivery=polling`);
    expect(((await polling.json()) as { events: unknown[] }).events).toEqual(events);
  });

  it('it grants nothing else: another job, the job state, cancel, starting builds, a tampered ticket are 401', async () => {
    const id = await alice.startBuild({ steps: 200, stepMs: 50 });
    const other = await alice.startBuild({ steps: 1, stepMs: 0 });
    const { ticket } = await issue(server, `/builds/${id}`);
    const q = `ticket=${encodeURIComponent(ticket)}`;
    const statusOf = async (path: string, init?: RequestInit): Promise<number> => (await fetch(`${server.baseUrl}${path}`, init)).status;
    expect(await statusOf(`/builds/${other}/events?${q}`)).toBe(401);
    expect(await statusOf(`/builds/${id}?${q}`)).toBe(401);
    expect(await statusOf(`/builds/${id}/cancel?${q}`, { method: 'POST' })).toBe(401);
    expect(await statusOf(`/builds?${q}`, { method: 'POST' })).toBe(401);
    expect(await statusOf(`/reports/${id}/events?${q}`)).toBe(401);
    const [version, payload, signature] = ticket.split('.');
    const forged = `${version}.${Buffer.from(JSON.stringify(['bob', 'builds', id, Date.now() + 60_000])).toString('base64url')}.${signature}`;
    expect(await statusOf(`/builds/${id}/events?ticket=${encodeURIComponent(forged)}&delivery=polling`)).toBe(401);
    expect(
      await statusOf(`/builds/${id}/events?ticket=${encodeURIComponent(`${version}.${payload}.x${signature.slice(1)}`)}&delivery=polling`),
    ).toBe(401);
    expect(await statusOf(`/builds/${id}/events?${q}&delivery=polling`)).toBe(200);
    await alice.cancel(id);
  });

  it('a ticket needs the bearer token of the job owner: no token is 401, another owner gets 404', async () => {
    const id = await alice.startBuild({ steps: 1, stepMs: 0 });
    expect((await fetch(`${server.baseUrl}/builds/${id}/ticket`, { method: 'POST' })).status).toBe(401);
    expect((await ticketFor(server, `/builds/${id}`, 'tokenB-9c8d')).status).toBe(404);
    expect((await ticketFor(server, '/builds/no-such-job', 'tokenA-1f2e')).status).toBe(404);
    await bob.startBuild({ steps: 1, stepMs: 0 });
  });

  it('reports have tickets too, bound to the reports route', async () => {
    const id = await new ApiClient(server.baseUrl, 'tokenA-1f2e', 'reports').startJob({ pages: 1, pageMs: 0 });
    const { ticket } = await issue(server, `/reports/${id}`);
    const page = await fetch(`${server.baseUrl}/reports/${id}/events?delivery=polling&waitMs=5000&ticket=${encodeURIComponent(ticket)}`);
    expect(page.status).toBe(200);
    expect((await fetch(`${server.baseUrl}/builds/${id}/events?delivery=polling&ticket=${encodeURIComponent(ticket)}`)).status).toBe(401);
  });

  it('STREAM_TICKET_SECRET shorter than 32 characters stops start-up naming it', async () => {
    await expect(startApiServer({ AUTH_TOKENS: TOKENS, STREAM_TICKET_SECRET: 'short' })).rejects.toThrow(
      /STREAM_TICKET_SECRET must be at least 32/,
    );
  });

  it('a ticket expires after STREAM_TICKET_TTL_MS (here 1 s); an instance listing the same tokens in another order accepts it', async () => {
    const short = await startApiServer({ AUTH_TOKENS: TOKENS, STREAM_TICKET_TTL_MS: '1000' });
    const reordered = await startApiServer({ AUTH_TOKENS: ' bob : tokenB-9c8d , alice:tokenA-1f2e' });
    try {
      const owner = new ApiClient(short.baseUrl, 'tokenA-1f2e');
      const id = await owner.startBuild({ steps: 1, stepMs: 0 });
      await owner.waitForEnd(id);
      const { ticket, expiresAt } = await issue(short, `/builds/${id}`);
      // The other instance has no such job (memory backend): 404, not 401, shows it accepted the ticket.
      const elsewhere = await fetch(`${reordered.baseUrl}/builds/${id}/events?delivery=polling&ticket=${encodeURIComponent(ticket)}`);
      expect(elsewhere.status).toBe(404);
      // The expiry is what is under test: wait until it has passed.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 50));
      const expired = await fetch(`${short.baseUrl}/builds/${id}/events?delivery=polling&ticket=${encodeURIComponent(ticket)}`);
      expect(expired.status).toBe(401);
      expect(((await expired.json()) as { message: string }).message).toMatch(/stream ticket is not valid for this job, or has expired/);
    } finally {
      await short.close();
      await reordered.close();
    }
  });
});
