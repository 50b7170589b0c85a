import { setTimeout as delay } from 'node:timers/promises';
import { EventSource, type EventSourceFetchInit } from 'eventsource';
import { compareEventIds, isTerminal, readLines, readSse, type BuildApi, type EventPage, type WireEvent } from './build-api.js';

/** How one request of a {@link FailoverFollower} ended. */
export type ConnectionEnd =
  /** The stream (or page) carried the terminal event: the follow is over. */
  | 'terminal'
  /** The server ended the response cleanly before the terminal event (e.g. it is shutting down). */
  | 'closed'
  /** The response broke off (the process died, the connection was reset). */
  | 'broken'
  /** No answer at all (connection refused): nothing listens there any more. */
  | 'refused'
  /** 503: the backend is unavailable; the client waits a little and tries again. */
  | 'unavailable'
  /** A polling page that was not the last. */
  | 'page';

/** One request a {@link FailoverFollower} made. */
export interface FailoverConnection {
  /** Label of the api it went to. */
  api: string;
  /** The cursor it sent (`Last-Event-ID`, `?after=`), undefined on the first request. */
  cursor: string | undefined;
  /** HTTP status, undefined when no answer came. */
  status?: number;
  /** Events received over this request. */
  events: number;
  end: ConnectionEnd;
  /** Why it broke or was refused. */
  error?: string;
  /** When it ended (epoch ms). */
  endedAt: number;
}

export type FailoverKind = 'sse' | 'ndjson' | 'polling';

export interface FailoverOptions {
  /** Index in `apis` of the first api to use (default 0). */
  startAt?: number;
  /** Polling: `waitMs` of each page (default 2000). */
  waitMs?: number;
  /** The whole follow fails after this long (default 40 s). */
  timeoutMs?: number;
}

/** Clients still following, for {@link closeFailoverClients}. */
const openClients = new Set<{ close(): void }>();

/**
 * Closes every {@link FailoverFollower} and {@link FailoverEventSource} still following (their
 * `ended` rejects): call it in `afterEach`, so that a failed test leaves no client retrying.
 */
export function closeFailoverClients(): void {
  for (const client of [...openClients]) client.close();
}

/** How long a client waits after a 503 or when no api answered, before it tries again. */
const RETRY_PAUSE_MS = 100;

function describeError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  const message = error instanceof Error ? error.message : String(error);
  return cause ? `${message} (${cause.code ?? cause.message})` : message;
}

/**
 * A client behind a load balancer that routes around dead instances: it follows one job over
 * SSE, NDJSON or long-polling on one api and, whenever a request is refused, breaks off or ends
 * before the terminal event, resumes from the last id it received (`Last-Event-ID` for SSE,
 * `?after=` otherwise) on the next api of the list. It records every request, and fails at once
 * on a protocol violation: an id not after the previous one (so a duplicate), anything after
 * the terminal event, a status other than 200 and 503.
 */
export class FailoverFollower {
  readonly events: WireEvent[] = [];
  readonly connections: FailoverConnection[] = [];
  /** Resolves with every event received once the terminal event came; rejects on a violation or the timeout. */
  readonly ended: Promise<WireEvent[]>;
  private readonly abort = new AbortController();
  private waiters: Array<{ predicate: (event: WireEvent) => boolean; resolve: (event: WireEvent) => void }> = [];
  private index: number;

  constructor(
    private readonly apis: readonly BuildApi[],
    readonly jobId: string,
    readonly kind: FailoverKind,
    private readonly options: FailoverOptions = {},
  ) {
    this.index = options.startAt ?? 0;
    const timeoutMs = options.timeoutMs ?? 40_000;
    const timer = setTimeout(
      () => this.abort.abort(new Error(`${this.describe()} did not end within ${timeoutMs} ms: ${JSON.stringify(this.connections)}`)),
      timeoutMs,
    );
    this.ended = this.run()
      .then(
        () => this.events,
        (error: unknown) => {
          throw this.abort.signal.aborted ? this.abort.signal.reason : error;
        },
      )
      .finally(() => {
        clearTimeout(timer);
        openClients.delete(this);
      });
    this.ended.catch(() => undefined); // awaited by the test
    openClients.add(this);
  }

  /** Stops following (`ended` rejects), as a client going away does. */
  close(): void {
    this.abort.abort(new Error(`${this.describe()} closed by the test`));
  }

  /** Resolves with the first received event matching `predicate` (received ones count); rejects if the follow ends first. */
  waitFor(predicate: (event: WireEvent) => boolean): Promise<WireEvent> {
    const found = this.events.find(predicate);
    if (found) return Promise.resolve(found);
    const awaited = new Promise<WireEvent>((resolve) => this.waiters.push({ predicate, resolve }));
    const endedFirst = this.ended.then(() => {
      throw new Error(`${this.describe()} ended without the awaited event`);
    });
    return Promise.race([awaited, endedFirst]);
  }

  /** Labels of the apis of the requests that got an answer, in order, consecutive repeats merged. */
  servedBy(): string[] {
    const labels: string[] = [];
    for (const connection of this.connections) {
      if (connection.status !== undefined && labels.at(-1) !== connection.api) labels.push(connection.api);
    }
    return labels;
  }

  describe(): string {
    return `${this.kind} failover follower of job ${this.jobId}`;
  }

  private get cursor(): string | undefined {
    return this.events.at(-1)?.id;
  }

  private push(event: WireEvent): void {
    const last = this.events.at(-1);
    if (last && isTerminal(last.type)) throw new Error(`${this.describe()}: ${event.type} ${event.id} after the terminal ${last.type}`);
    if (last && compareEventIds(last.id, event.id) >= 0) {
      throw new Error(`${this.describe()}: ${event.type} ${event.id} does not come after ${last.id} (a duplicate or out of order)`);
    }
    this.events.push(event);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(event)) {
        this.waiters = this.waiters.filter((other) => other !== waiter);
        waiter.resolve(event);
      }
    }
  }

  private async run(): Promise<void> {
    let refusedInARow = 0;
    for (;;) {
      this.abort.signal.throwIfAborted();
      const api = this.apis[this.index % this.apis.length];
      const cursor = this.cursor;
      const connection: FailoverConnection = { api: api.label, cursor, events: 0, end: 'refused', endedAt: 0 };
      this.connections.push(connection);
      try {
        connection.end = await (this.kind === 'polling' ? this.page(api, cursor, connection) : this.stream(api, cursor, connection));
      } catch (error) {
        if (this.abort.signal.aborted) throw this.abort.signal.reason;
        if (error instanceof ProtocolError) throw error;
        connection.end = connection.status === undefined ? 'refused' : 'broken';
        connection.error = describeError(error);
      }
      connection.endedAt = Date.now();
      if (connection.end === 'terminal') return;
      if (connection.end === 'page') continue;
      // Anything else: go elsewhere, as a load balancer does once an instance fails.
      this.index++;
      refusedInARow = connection.end === 'refused' ? refusedInARow + 1 : 0;
      if (connection.end === 'unavailable' || refusedInARow >= this.apis.length) {
        await delay(RETRY_PAUSE_MS, undefined, { signal: this.abort.signal });
      }
    }
  }

  private async stream(api: BuildApi, cursor: string | undefined, connection: FailoverConnection): Promise<ConnectionEnd> {
    const headers: Record<string, string> = { Accept: this.kind === 'sse' ? 'text/event-stream' : 'application/x-ndjson' };
    let query = '';
    if (cursor !== undefined && this.kind === 'sse') headers['Last-Event-ID'] = cursor;
    else if (cursor !== undefined) query = `?after=${encodeURIComponent(cursor)}`;
    const response = await api.fetch(`/${api.resource}/${encodeURIComponent(this.jobId)}/events${query}`, {
      headers,
      signal: this.abort.signal,
    });
    connection.status = response.status;
    if (response.status === 503) {
      await response.text();
      return 'unavailable';
    }
    if (response.status !== 200) {
      throw new ProtocolError(`${this.describe()}: ${api.label} answered ${response.status} ${await response.text()} to cursor ${cursor}`);
    }
    const received = this.kind === 'sse' ? readSse(response) : ndjsonEvents(response);
    for await (const event of received) {
      try {
        this.push(event);
      } catch (error) {
        throw new ProtocolError((error as Error).message);
      }
      connection.events++;
    }
    return this.events.length && isTerminal(this.events.at(-1)!.type) ? 'terminal' : 'closed';
  }

  private async page(api: BuildApi, cursor: string | undefined, connection: FailoverConnection): Promise<ConnectionEnd> {
    const params = new URLSearchParams({ delivery: 'polling', waitMs: String(this.options.waitMs ?? 2000) });
    if (cursor !== undefined) params.set('after', cursor);
    const response = await api.fetch(`/${api.resource}/${encodeURIComponent(this.jobId)}/events?${params}`, { signal: this.abort.signal });
    connection.status = response.status;
    const text = await response.text();
    if (response.status === 503) return 'unavailable';
    if (response.status !== 200) throw new ProtocolError(`${this.describe()}: ${api.label} answered ${response.status} ${text}`);
    const page = JSON.parse(text) as EventPage;
    const expectedNext = page.events.at(-1)?.id ?? cursor ?? '0';
    if (page.next !== expectedNext) throw new ProtocolError(`${this.describe()}: next ${page.next} is not ${expectedNext}`);
    try {
      for (const event of page.events) this.push(event);
    } catch (error) {
      throw new ProtocolError((error as Error).message);
    }
    connection.events = page.events.length;
    const terminal = page.events.length > 0 && isTerminal(page.events.at(-1)!.type);
    if (page.done !== terminal) throw new ProtocolError(`${this.describe()}: done=${page.done} on a page of ${page.events.length} events`);
    return terminal ? 'terminal' : 'page';
  }
}

/** A violation of the contract: the follow fails instead of retrying. */
class ProtocolError extends Error {}

async function* ndjsonEvents(response: Response): AsyncGenerator<WireEvent> {
  for await (const line of readLines(response)) {
    const event = JSON.parse(line) as WireEvent;
    if (typeof event?.id !== 'string' || typeof event.type !== 'string') throw new ProtocolError(`not an event: ${line}`);
    yield event;
  }
}

/** One request of a {@link FailoverEventSource}. */
export interface EventSourceRequest {
  /** Label of the api that answered, `(none)` when none accepted the connection. */
  api: string;
  /** The `Last-Event-ID` it sent. */
  lastEventId: string | undefined;
  /** HTTP status, 0 when no api answered. */
  status: number;
  /** How many events the client had received when it made this request. */
  receivedBefore: number;
}

const SSE_TYPES = ['started', 'step', 'token', 'progress', 'log', 'completed', 'failed', 'cancelled', 'message'];

/**
 * A browser's EventSource (the `eventsource` package: it reconnects by itself, with
 * `Last-Event-ID`, after the server's `retry:`) behind a router that sends each request to the
 * first api of the list that accepts the connection, starting with the one that answered last.
 * `ended` resolves once the server answers 204 (the cursor is at the terminal event); it rejects
 * on any other final failure, or after `timeoutMs`.
 */
export class FailoverEventSource {
  readonly events: WireEvent[] = [];
  readonly requests: EventSourceRequest[] = [];
  readonly ended: Promise<WireEvent[]>;
  private waiters: Array<{ predicate: (event: WireEvent) => boolean; resolve: (event: WireEvent) => void }> = [];
  private current = 0;
  /** Closes the EventSource and rejects `ended`. */
  close: () => void = () => undefined;

  constructor(
    private readonly apis: readonly BuildApi[],
    readonly jobId: string,
    timeoutMs = 40_000,
  ) {
    // Every api of the list serves the same resource (builds or reports).
    const path = `/${apis[0].resource}/${encodeURIComponent(jobId)}/events`;
    this.ended = new Promise<WireEvent[]>((resolve, reject) => {
      const source = new EventSource(`${apis[0].baseUrl}${path}`, { fetch: (_input, init) => this.route(path, init) });
      const fail = (message: string): void => {
        clearTimeout(timer);
        source.close();
        reject(new Error(`EventSource on job ${jobId} ${message}: ${JSON.stringify(this.requests)}`));
      };
      const timer = setTimeout(() => fail(`still open after ${timeoutMs} ms`), timeoutMs);
      this.close = () => fail('closed by the test');
      for (const type of SSE_TYPES) {
        source.addEventListener(type, (event: MessageEvent) =>
          this.push({ id: event.lastEventId, type: event.type, data: JSON.parse(event.data as string) }),
        );
      }
      source.addEventListener('error', (event) => {
        if (source.readyState !== EventSource.CLOSED) return; // it reconnects by itself
        clearTimeout(timer);
        source.close();
        if (event.code === 204) resolve(this.events);
        else reject(new Error(`EventSource on job ${jobId} failed: ${event.code} ${event.message} ${JSON.stringify(this.requests)}`));
      });
    }).finally(() => openClients.delete(this));
    this.ended.catch(() => undefined); // awaited by the test
    openClients.add(this);
  }

  /** Resolves with the first received event matching `predicate`; rejects if the EventSource stops first. */
  waitFor(predicate: (event: WireEvent) => boolean): Promise<WireEvent> {
    const found = this.events.find(predicate);
    if (found) return Promise.resolve(found);
    const awaited = new Promise<WireEvent>((resolve) => this.waiters.push({ predicate, resolve }));
    const endedFirst = this.ended.then(() => {
      throw new Error(`EventSource on job ${this.jobId} ended without the awaited event`);
    });
    return Promise.race([awaited, endedFirst]);
  }

  private push(event: WireEvent): void {
    this.events.push(event);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(event)) {
        this.waiters = this.waiters.filter((other) => other !== waiter);
        waiter.resolve(event);
      }
    }
  }

  private async route(path: string, init: EventSourceFetchInit): Promise<Response> {
    const lastEventId = init.headers['Last-Event-ID'];
    const receivedBefore = this.events.length;
    let lastError: unknown;
    for (let tries = 0; tries < this.apis.length; tries++) {
      const index = (this.current + tries) % this.apis.length;
      try {
        const response = await fetch(`${this.apis[index].baseUrl}${path}`, init as RequestInit);
        this.current = index;
        this.requests.push({ api: this.apis[index].label, lastEventId, status: response.status, receivedBefore });
        return response;
      } catch (error) {
        lastError = error;
      }
    }
    this.requests.push({ api: '(none)', lastEventId, status: 0, receivedBefore });
    throw lastError;
  }
}
