import { startApiServer, type ApiServer } from './support/api-server.js';

/** `CORS_ORIGINS`: the listed origins may call the API from a browser; unset, no CORS header is ever sent. */

const ALLOWED = 'https://app.example.com';
const OTHER = 'https://evil.example.net';

function preflight(server: ApiServer, origin: string, path = '/builds', method = 'POST'): Promise<Response> {
  return fetch(`${server.baseUrl}${path}`, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'authorization,content-type' },
  });
}

describe('CORS_ORIGINS set', () => {
  let server: ApiServer;

  beforeAll(async () => {
    server = await startApiServer({ CORS_ORIGINS: `${ALLOWED}, http://localhost:5173`, AUTH_TOKENS: 'alice:tokenA' });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('a preflight from a listed origin is answered without a token, allowing the Authorization header', async () => {
    const response = await preflight(server, ALLOWED);
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(response.headers.get('access-control-allow-methods')).toBe('GET,POST');
    expect(response.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(response.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('the second listed origin too; an unlisted one gets no allow-origin header (the browser refuses it)', async () => {
    expect((await preflight(server, 'http://localhost:5173')).headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    const refused = await preflight(server, OTHER);
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('real requests from a listed origin carry the header and expose X-Job-Id; errors (401) carry it too', async () => {
    const started = await fetch(`${server.baseUrl}/builds?delivery=direct`, {
      method: 'POST',
      headers: { Origin: ALLOWED, Authorization: 'Bearer tokenA', 'Content-Type': 'application/json' },
      body: JSON.stringify({ steps: 1, stepMs: 0 }),
    });
    expect(started.status).toBe(200);
    expect(started.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(started.headers.get('access-control-expose-headers')).toContain('X-Job-Id');
    expect(started.headers.get('x-job-id')).toEqual(expect.any(String));
    await started.text();
    const refused = await fetch(`${server.baseUrl}/builds`, { method: 'POST', headers: { Origin: ALLOWED } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(ALLOWED);
  });
});

describe('CORS_ORIGINS unset: same origin only', () => {
  let server: ApiServer;

  beforeAll(async () => {
    server = await startApiServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('no CORS header on a preflight or a request, whatever the Origin', async () => {
    const response = await preflight(server, ALLOWED);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    const health = await fetch(`${server.baseUrl}/health`, { headers: { Origin: ALLOWED } });
    expect(health.status).toBe(200);
    expect(health.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS_ORIGINS checked at start', () => {
  it.each(['*', 'app.example.com', 'https://app.example.com/', 'https://app.example.com/path', 'ftp://files.example.com'])(
    '%j stops start-up naming the variable',
    async (value) => {
      await expect(startApiServer({ CORS_ORIGINS: value })).rejects.toThrow(/CORS_ORIGINS must be a comma-separated list of origins/);
    },
  );
});
