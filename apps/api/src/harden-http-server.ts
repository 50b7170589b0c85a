import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { ApiSettings } from './api-settings.js';

/** Node's parser errors that mean "the headers are too large". */
const HEADERS_TOO_LARGE = new Set(['HPE_HEADER_OVERFLOW']);
/** Node's errors for a request that took too long to arrive. */
const TIMED_OUT = new Set(['ERR_HTTP_REQUEST_TIMEOUT']);

/** What a socket-level client error is answered with (408, 431 or 400), in the API's JSON error shape. */
function clientErrorAnswer(code: string | undefined): { status: number; message: string } {
  if (code && TIMED_OUT.has(code)) return { status: 408, message: 'The request was not received in time' };
  if (code && HEADERS_TOO_LARGE.has(code)) return { status: 431, message: 'The request headers are too large' };
  return { status: 400, message: 'The request is not valid HTTP' };
}

/**
 * Deliberate limits instead of Node's defaults (headers 60 s, whole request 300 s, checked every
 * 30 s), so a few hundred sockets that send their headers or body slowly cannot hold the process:
 * such a socket gets 408 and is closed within `headersTimeoutMs` (or `requestTimeoutMs` for the
 * body) plus one check interval. Event streams are not affected: the request timeout covers
 * receiving the request, not how long the response lasts.
 *
 * Requests that Node's HTTP parser rejects (bad bytes in the path, conflicting length headers,
 * headers too large) get the same JSON error body as every other error instead of an empty one.
 * Call before the server listens.
 */
export function hardenHttpServer(server: Server, settings: ApiSettings): void {
  server.headersTimeout = settings.headersTimeoutMs;
  server.requestTimeout = settings.requestTimeoutMs;
  server.keepAliveTimeout = settings.keepAliveTimeoutMs;
  // Read when the server starts listening: how often the two timeouts above are enforced.
  // (A documented `createServer` option that @types/node does not list as a property.)
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(1000, settings.headersTimeoutMs);
  server.on('clientError', (error: Error & { code?: string }, socket: Socket) => {
    // A response already begun on this socket cannot be replaced by another one.
    const inProgress = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
    if (error.code === 'ECONNRESET' || !socket.writable || inProgress) {
      socket.destroy();
      return;
    }
    const { status, message } = clientErrorAnswer(error.code);
    const body = JSON.stringify({ statusCode: status, error: STATUS_CODES[status], message });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
  });
}
