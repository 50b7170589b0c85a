import { connect, type Socket } from 'node:net';

/** What came back on a raw socket, and whether the server closed it. */
export interface RawExchange {
  /** Everything received, as text. */
  text: string;
  /** True when the server ended the connection before `waitMs` ran out. */
  closedByServer: boolean;
  /** Milliseconds from connecting to the server's close (or to giving up). */
  elapsedMs: number;
}

/** `host` and `port` of a `http://host:port` base URL. */
function addressOf(baseUrl: string): { host: string; port: number } {
  const url = new URL(baseUrl);
  return { host: url.hostname, port: Number(url.port) };
}

/** Opens a TCP connection to the API; resolves once connected. */
export function openSocket(baseUrl: string): Promise<Socket> {
  const { host, port } = addressOf(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(port, host, () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * Collects what `socket` receives until the server closes it, or until `waitMs` passed (then the
 * client closes it). Bytes the HTTP client libraries would refuse to send go out as they are.
 */
export function collect(socket: Socket, waitMs: number): Promise<RawExchange> {
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closedByServer: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString('utf8'), closedByServer, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
  });
}

/** Sends `request` verbatim on a new connection and collects the answer (see {@link collect}). */
export async function rawExchange(baseUrl: string, request: string | Buffer, waitMs: number): Promise<RawExchange> {
  const socket = await openSocket(baseUrl);
  const answer = collect(socket, waitMs);
  socket.write(request);
  return answer;
}

/** Status, headers (lower-case names) and body of a raw HTTP/1.1 answer (chunked bodies decoded). */
export function parseRawResponse(text: string): { status: number; headers: Map<string, string>; body: string } {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`no complete HTTP answer in ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  let body = text.slice(end + 4);
  if (headers.get('transfer-encoding') === 'chunked') {
    let decoded = '';
    for (let at = 0; ;) {
      const lineEnd = body.indexOf('\r\n', at);
      const size = parseInt(body.slice(at, lineEnd), 16);
      if (!size) break;
      decoded += body.slice(lineEnd + 2, lineEnd + 2 + size);
      at = lineEnd + 2 + size + 2;
    }
    body = decoded;
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}
