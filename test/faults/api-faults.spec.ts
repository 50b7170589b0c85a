import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { AppProcess } from '../support/app-process.js';
import { assertOrderedStream, expectedBuildEvents, typesAndData, withoutTs, type BuildApi, type WireEvent } from '../support/build-api.js';
import { FailoverEventSource, FailoverFollower, closeFailoverClients, type FailoverConnection } from '../support/failover-follower.js';
import { FaultCluster, stepIndex } from './fault-cluster.js';

/**
 * Api processes that die (SIGKILL) or are stopped (SIGTERM) while clients stream from them.
 * Every client sits behind a "load balancer" that routes around an instance once it fails: it
 * starts on the doomed api and resumes, from the last id it received, on the other one. One
 * api (B) and one worker live through the file; each test starts its own doomed api.
 */

const STEPS = 10;
const TOKENS = 2;
/** About two seconds per build: the api dies around step 3. */
const BUILD = { steps: STEPS, stepMs: 200, tokensPerStep: TOKENS };
/**
 * About five seconds: the SIGTERM test checks that the api exited before the build ended, so the
 * build must outlast a shutdown slowed by a busy machine (about three seconds are left after step 3).
 */
const SLOW_BUILD = { ...BUILD, stepMs: 500 };

describe('faults: apis killed or stopped mid-stream (bullmq, 1 worker)', () => {
  let cluster: FaultCluster;
  let b: BuildApi;

  beforeAll(async () => {
    cluster = await FaultCluster.start();
    [{ client: b }] = await Promise.all([cluster.api('api B'), cluster.worker()]);
  }, 30_000);

  afterEach(() => closeFailoverClients());

  afterAll(async () => {
    await cluster?.close();
  }, 20_000);

  /** Clients of every kind, all starting on `doomed`, failing over to B. */
  const followAll = (doomed: BuildApi, id: string) => ({
    sse: new FailoverFollower([doomed, b], id, 'sse'),
    ndjson: new FailoverFollower([doomed, b], id, 'ndjson'),
    polling: new FailoverFollower([doomed, b], id, 'polling'),
    // Browsers stay with the instance that answered last until it refuses them: several, so
    // that some reconnect while their previous connection to the doomed api may still be open.
    eventSources: [1, 2, 3].map(() => new FailoverEventSource([doomed, b], id)),
  });
  type Clients = ReturnType<typeof followAll>;

  const allReachedStep = (clients: Clients, index: number): Promise<unknown> =>
    Promise.all(
      [clients.sse, clients.ndjson, clients.polling, ...clients.eventSources].map((client) =>
        client.waitFor((event) => stepIndex(event) === index),
      ),
    );

  /**
   * Every client got the whole build once, in order, the same ids as a replay on B; each raw
   * client's requests went to `doomed` and then to B only, resuming from the last id it had.
   * Returns the request to `doomed` that was open when it went away, per raw client. A failure
   * shows every client's requests and the doomed api's output.
   */
  const checkClients = (
    clients: Clients,
    doomed: { client: BuildApi; process: AppProcess },
    id: string,
  ): Promise<Record<string, FailoverConnection>> =>
    checkClientsOf(clients, doomed.client, id).catch((error: Error) => {
      throw new Error(`${error.message}\nclients: ${describeClients(clients)}\n${doomed.client.label}:\n${doomed.process.output}`);
    });

  const checkClientsOf = async (clients: Clients, doomed: BuildApi, id: string): Promise<Record<string, FailoverConnection>> => {
    const [bySse, byNdjson, byPolling, ...byEventSources] = await Promise.all([
      clients.sse.ended,
      clients.ndjson.ended,
      clients.polling.ended,
      ...clients.eventSources.map((eventSource) => eventSource.ended),
    ]);
    const all: WireEvent[] = await b.follow(id, 'polling').ended;
    expect(typesAndData(all)).toEqual(expectedBuildEvents(STEPS, TOKENS));
    assertOrderedStream(all, 'replay on B');
    expect(byNdjson).toEqual(all);
    expect(byPolling).toEqual(all);
    expect(bySse).toEqual(withoutTs(all));
    for (const byEventSource of byEventSources) expect(byEventSource).toEqual(withoutTs(all));

    const lastOnDoomed: Record<string, FailoverConnection> = {};
    for (const [name, client] of Object.entries({ sse: clients.sse, ndjson: clients.ndjson, polling: clients.polling })) {
      expect({ name, servedBy: client.servedBy() }).toEqual({ name, servedBy: [doomed.label, b.label] });
      const firstOnB = client.connections.findIndex((connection) => connection.api === b.label);
      const before = client.connections.slice(0, firstOnB);
      const received = before.reduce((sum, connection) => sum + connection.events, 0);
      expect(received).toBeGreaterThanOrEqual(1);
      // The first request to B resumed right after the last event received from the doomed api.
      expect({ name, cursor: client.connections[firstOnB].cursor }).toEqual({ name, cursor: all[received - 1].id });
      lastOnDoomed[name] = before.filter((connection) => connection.status !== undefined).at(-1)!;
    }
    // The EventSources: their one request to the doomed api, then every reconnect to B, the
    // first one with the id of the last event received (the last one told to stop with 204).
    for (const [i, { requests }] of clients.eventSources.entries()) {
      expect({ eventSource: i, apis: requests.map((request) => request.api) }).toEqual({
        eventSource: i,
        apis: [doomed.label, ...requests.slice(1).map(() => b.label)],
      });
      expect(requests[0]).toMatchObject({ status: 200, lastEventId: undefined });
      expect(requests[1]).toMatchObject({ status: 200, lastEventId: all[requests[1].receivedBefore - 1].id });
      expect(requests.at(-1)).toMatchObject({ status: 204, lastEventId: all.at(-1)!.id });
    }
    return lastOnDoomed;
  };

  const describeClients = (clients: Clients): string =>
    JSON.stringify(
      {
        sse: clients.sse.connections,
        ndjson: clients.ndjson.connections,
        polling: clients.polling.connections.filter((connection) => connection.end !== 'page'),
        eventSources: clients.eventSources.map((eventSource) => eventSource.requests),
      },
      null,
      1,
    );

  it('an api killed with SIGKILL mid-stream: SSE, NDJSON and polling clients resume on the other api from their last id and get exactly the remaining events', async () => {
    const doomed = await cluster.api('api A (killed)');
    const id = await doomed.client.start(BUILD);
    const clients = followAll(doomed.client, id);
    await allReachedStep(clients, 3);

    expect(await doomed.process.stop('SIGKILL')).toBe('SIGKILL');
    const open = await checkClients(clients, doomed, id);
    // The streams broke off (no clean end): the process died under them.
    expect(open.sse.end).toBe('broken');
    expect(open.ndjson.end).toBe('broken');
    expect(await b.state(id)).toMatchObject({ state: 'completed', attempt: 1 });
  }, 30_000);

  it('SIGTERM to an api ends its open SSE and NDJSON streams cleanly and answers its long-polls; clients resume on the other api and get the rest exactly once; it exits 0 at once', async () => {
    const doomed = await cluster.api('api C (stopped)');
    const id = await doomed.client.start(SLOW_BUILD);
    const clients = followAll(doomed.client, id);
    await allReachedStep(clients, 3);

    // A client whose request is still on its way (its headers half sent) when the api stops
    // accepting connections: its answer must close the connection, not keep it alive.
    const late = await HalfSentRequest.open(doomed.process.port!, `/builds/${id}`);

    const termAt = Date.now();
    const exit = doomed.process.stop('SIGTERM');
    await untilRefused(doomed.process.port!);
    const lateAnswer = await late.finish();
    expect(await exit).toBe(0);
    const exitedAfterMs = Date.now() - termAt;
    expect(lateAnswer).toEqual({ status: 200, connection: 'close', closedByServerWithinMs: expect.any(Number) });
    expect(lateAnswer.closedByServerWithinMs).toBeLessThan(1000);
    expect(exitedAfterMs).toBeLessThan(2500);
    const open = await checkClients(clients, doomed, id);
    // The streams were ended by the server (a clean end of the response), not cut off.
    expect(open.sse.end).toBe('closed');
    expect(open.ndjson.end).toBe('closed');
    expect(open.polling.end).toBe('page'); // the long-poll in flight was answered (empty), not cut off
    // Nothing waited for the build (it ran for about 3 s more) to let the process go.
    const all = await b.follow(id, 'polling').ended;
    expect(all.at(-1)!.ts! - termAt).toBeGreaterThan(exitedAfterMs);
    expect(await b.state(id)).toMatchObject({ state: 'completed', attempt: 1 });
  }, 30_000);
});

/** An HTTP/1.1 request over its own connection, sent in two parts: all but the end of its headers, then the rest. */
class HalfSentRequest {
  private received = '';
  private readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (this.received += chunk));
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async open(port: number, path: string): Promise<HalfSentRequest> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
    return new HalfSentRequest(socket);
  }

  /** Completes the request; resolves with the answer once the server closed the connection (or 6 s passed). */
  async finish(): Promise<{ status: number; connection: string | undefined; closedByServerWithinMs: number | string }> {
    const sentAt = Date.now();
    this.socket.write('\r\n');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 6000)));
    const outcome = await Promise.race([this.closed, timeout]);
    clearTimeout(timer);
    this.socket.destroy();
    const [head] = this.received.split('\r\n\r\n');
    const [statusLine, ...headerLines] = head.split('\r\n');
    const headers = new Map(
      headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
    );
    return {
      status: Number(statusLine.split(' ')[1]),
      connection: headers.get('connection'),
      closedByServerWithinMs: outcome === 'timeout' ? 'still open after 6000 ms' : Date.now() - sentAt,
    };
  }
}

/** Resolves once nothing accepts connections on `port` any more (bounded polling). */
async function untilRefused(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const socket = connect(port, '127.0.0.1');
    try {
      await once(socket, 'connect');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ECONNREFUSED') return;
      // A connection that reached the listener's backlog as it closed is reset, not refused:
      // the listener is going away, so poll once more until the port refuses.
      if (code !== 'ECONNRESET') throw error;
    } finally {
      socket.destroy();
    }
    if (Date.now() > deadline) throw new Error(`port ${port} still accepts connections after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10)); // polling period
  }
}
