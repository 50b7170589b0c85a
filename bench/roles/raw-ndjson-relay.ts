import { createServer, type ServerResponse } from 'node:http';
import { Redis } from 'ioredis';
import type { RoleMethods } from '../support/rpc.js';

type XReadReply = Array<[key: string, entries: Array<[id: string, fields: string[]]>]> | null;

/** Where the relay serves a stream: `GET /streams/<key>?n=<entries>`. */
export function relayPath(key: string, n: number): string {
  return `/streams/${encodeURIComponent(key)}?n=${n}`;
}

/**
 * The raw contender's HTTP hop: a plain `node:http` server that reads a Redis Stream with
 * `XREAD BLOCK` from its beginning and writes every entry as one NDJSON line
 * (`{ id, type, data }`, the shape of the library's lines), ending the response after `n` entries.
 * One blocking connection per request, as the simplest relay would have.
 */
export async function rawNdjsonRelayRole(config: { redisUrl: string; port: number }): Promise<RoleMethods> {
  const open = new Set<Redis>();
  const relay = async (key: string, n: number, response: ServerResponse): Promise<void> => {
    const blocking = new Redis(config.redisUrl);
    open.add(blocking);
    response.once('close', () => blocking.disconnect());
    try {
      response.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
      response.flushHeaders();
      let id = '0-0';
      for (let sent = 0; sent < n && !response.destroyed;) {
        const reply = (await blocking.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', key, id)) as XReadReply;
        if (!reply) continue;
        let lines = '';
        for (const [, entries] of reply) {
          for (const [entryId, fields] of entries) {
            id = entryId;
            lines += `${JSON.stringify({ id: entryId, type: fields[1], data: JSON.parse(fields[3]) })}\n`;
            sent++;
          }
        }
        response.write(lines);
      }
      response.end();
    } finally {
      open.delete(blocking);
      blocking.disconnect();
    }
  };

  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://relay');
    const match = /^\/streams\/([^/]+)$/.exec(url.pathname);
    if (request.method !== 'GET' || !match) {
      response.writeHead(404).end();
      return;
    }
    relay(decodeURIComponent(match[1]), Number(url.searchParams.get('n')), response).catch(() => response.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, '127.0.0.1', () => resolve());
  });

  return {
    async close(): Promise<void> {
      for (const client of open) client.disconnect();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
