import { EventSource } from 'eventsource';

/** An event as the API serves it (`ts` is absent on SSE, which carries only id, type and data). */
export interface WireEvent {
  id: string;
  type: string;
  data: unknown;
  ts?: number;
}

/** A polling answer. */
export interface EventPage {
  events: WireEvent[];
  next: string;
  done: boolean;
}

/** `GET /builds/:id` (and `GET /reports/:id`). */
export interface BuildState {
  id: string;
  state: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
  attempt: number;
  createdAt: number;
  [key: string]: unknown;
}

/** The demo build's input. */
export interface BuildBody {
  steps?: number;
  stepMs?: number;
  tokensPerStep?: number;
  failAtStep?: number;
}

/** The demo report's input. */
export interface ReportBody {
  pages?: number;
  pageMs?: number;
  failAtPage?: number;
}

/** The demo's job resources: `/builds` (run by a `@JobHandler`) and `/reports` (run by a plain `@Processor`). */
export type JobResource = 'builds' | 'reports';

export const TERMINAL_TYPES: readonly string[] = ['completed', 'failed', 'cancelled'];

export function isTerminal(type: string): boolean {
  return TERMINAL_TYPES.includes(type);
}

/**
 * Orders two event ids of one job. The ids are opaque cursors to clients; the design only
 * promises they increase within a job. The API's are Redis stream ids (`<ms>-<seq>`), so this
 * is the one place the tests read them, and it refuses anything else rather than guess.
 */
export function compareEventIds(a: string, b: string): number {
  const parse = (id: string): [bigint, bigint] => {
    const match = /^([0-9]+)-([0-9]+)$/.exec(id);
    if (!match) throw new Error(`event id ${JSON.stringify(id)} is not a stream id`);
    return [BigInt(match[1]), BigInt(match[2])];
  };
  const [am, as] = parse(a);
  const [bm, bs] = parse(b);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let nextIndex = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (nextIndex < items.length) {
      const index = nextIndex++;
      results[index] = await fn(items[index], index);
    }
  });
  await Promise.all(lanes);
  return results;
}

/** A small client of one demo API process (development mode: no token), for its builds or its reports. */
export class BuildApi {
  constructor(
    readonly baseUrl: string,
    /** Names the process in failure messages ("api A"). */
    readonly label: string,
    /** The resource whose jobs it starts, reads and follows. */
    readonly resource: JobResource = 'builds',
  ) {}

  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.baseUrl}${path}`, init);
  }

  /** Starts a job of its resource (a build or a report), asserting the 202 `{ jobId }` answer. */
  async start(body: BuildBody | ReportBody): Promise<string> {
    const response = await this.fetch(`/${this.resource}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const json = JSON.parse(text) as { jobId?: unknown };
    if (response.status !== 202 || typeof json.jobId !== 'string')
      throw new Error(`${this.label}: POST /${this.resource} answered ${response.status} ${text}`);
    return json.jobId;
  }

  /** `GET /builds/:id` (`/reports/:id`), asserting a 200. */
  async state(id: string): Promise<BuildState> {
    const response = await this.fetch(`/${this.resource}/${encodeURIComponent(id)}`);
    const text = await response.text();
    if (response.status !== 200) throw new Error(`${this.label}: GET /${this.resource}/${id} answered ${response.status} ${text}`);
    return JSON.parse(text) as BuildState;
  }

  /** One polling page, asserting a 200. */
  async poll(id: string, query: { after?: string; limit?: number; waitMs?: number } = {}, signal?: AbortSignal): Promise<EventPage> {
    const params = new URLSearchParams({ delivery: 'polling' });
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const response = await this.fetch(`/${this.resource}/${encodeURIComponent(id)}/events?${params}`, { signal });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`${this.label}: polling ${id} answered ${response.status} ${text}`);
    return JSON.parse(text) as EventPage;
  }

  cancel(id: string): Promise<Response> {
    return this.fetch(`/${this.resource}/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  /** Long-polls until an event matching `predicate` arrives (bounded by `timeoutMs`); returns it. */
  async waitForEvent(id: string, predicate: (event: WireEvent) => boolean, timeoutMs = 20_000): Promise<WireEvent> {
    const deadline = Date.now() + timeoutMs;
    let after: string | undefined;
    while (Date.now() < deadline) {
      const page = await this.poll(id, { after, waitMs: Math.max(1, Math.min(5000, deadline - Date.now())) });
      const found = page.events.find(predicate);
      if (found) return found;
      if (page.done)
        throw new Error(`${this.label}: job ${id} ended without the awaited event (last: ${JSON.stringify(page.events.at(-1))})`);
      after = page.next;
    }
    throw new Error(`${this.label}: the awaited event of job ${id} did not arrive within ${timeoutMs} ms`);
  }

  /** Follows the job's events by NDJSON, SSE or long-polling; see {@link EventFollower}. */
  follow(id: string, kind: FollowKind, options: FollowOptions = {}): EventFollower {
    return new EventFollower(this, id, kind, options);
  }
}

export type FollowKind = 'ndjson' | 'sse' | 'polling';

export interface FollowOptions {
  /** `?after=` cursor (streams) or the first polling cursor. */
  after?: string;
  /** `Last-Event-ID` request header (streams). */
  lastEventId?: string;
  /** Polling: `limit` of each page. */
  limit?: number;
  /** Polling: `waitMs` of each page (default 5000). */
  waitMs?: number;
  /** The whole follow fails after this long (default 30 s). */
  timeoutMs?: number;
}

interface Waiter {
  predicate: (event: WireEvent) => boolean;
  resolve: (event: WireEvent) => void;
  reject: (error: Error) => void;
}

/**
 * One client following one job on one API process, recording every event as it arrives.
 * `ended` resolves with the events once the server ends the stream (streams) or a page says
 * `done` (polling); it rejects on a protocol violation, a non-200 answer or the timeout.
 * Polling pages are checked against the contract as they come: at most `limit` events, `next`
 * is the last id (or the cursor sent), `done` exactly on the page holding the terminal event.
 */
export class EventFollower {
  readonly events: WireEvent[] = [];
  /** HTTP status of the (first) response. */
  status?: number;
  /** Resolves once the server answered (streams: headers received; polling: first page). */
  readonly opened: Promise<void>;
  readonly ended: Promise<WireEvent[]>;
  /** Number of polling requests made. */
  pages = 0;
  private readonly abort = new AbortController();
  private waiters: Waiter[] = [];
  private failure?: Error;
  private finished = false;
  private markOpened!: () => void;
  private failOpened!: (error: Error) => void;

  constructor(
    readonly api: BuildApi,
    readonly jobId: string,
    readonly kind: FollowKind,
    private readonly options: FollowOptions,
  ) {
    this.opened = new Promise<void>((resolve, reject) => {
      this.markOpened = resolve;
      this.failOpened = reject;
    });
    this.opened.catch(() => undefined);
    const timeoutMs = options.timeoutMs ?? 30_000;
    const timer = setTimeout(
      () =>
        this.abort.abort(new Error(`${this.describe()} did not end within ${timeoutMs} ms (last: ${JSON.stringify(this.events.at(-1))})`)),
      timeoutMs,
    );
    this.ended = this.run()
      .then(
        () => this.events,
        (error: unknown) => {
          const reason: unknown = this.abort.signal.aborted ? this.abort.signal.reason : error;
          this.failure = reason instanceof Error ? reason : new Error(String(reason));
          this.failOpened(this.failure);
          throw this.failure;
        },
      )
      .finally(() => {
        clearTimeout(timer);
        this.finished = true;
        const error = this.failure ?? new Error(`${this.describe()} ended without the awaited event`);
        for (const waiter of this.waiters) waiter.reject(error);
        this.waiters = [];
      });
    this.ended.catch(() => undefined); // awaited by the test; never an unhandled rejection
  }

  /** Resolves with the first received event matching `predicate` (already received ones count). */
  waitFor(predicate: (event: WireEvent) => boolean, timeoutMs = 20_000): Promise<WireEvent> {
    const found = this.events.find(predicate);
    if (found) return Promise.resolve(found);
    if (this.finished) return Promise.reject(this.failure ?? new Error(`${this.describe()} ended without the awaited event`));
    return new Promise<WireEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== entry);
        reject(
          new Error(`${this.describe()}: awaited event not received within ${timeoutMs} ms (last: ${JSON.stringify(this.events.at(-1))})`),
        );
      }, timeoutMs);
      const entry: Waiter = {
        predicate,
        resolve: (event) => {
          clearTimeout(timer);
          resolve(event);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiters.push(entry);
    });
  }

  /** Drops the connection, as a client going away does; `ended` then rejects with an abort. */
  stop(): void {
    this.abort.abort(new Error(`${this.describe()} stopped by the test`));
  }

  describe(): string {
    return `${this.kind} follower of job ${this.jobId} on ${this.api.label}`;
  }

  private push(event: WireEvent): void {
    const last = this.events.at(-1);
    if (last && isTerminal(last.type)) throw new Error(`${this.describe()}: ${event.type} ${event.id} after the terminal ${last.type}`);
    this.events.push(event);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(event)) {
        this.waiters = this.waiters.filter((other) => other !== waiter);
        waiter.resolve(event);
      }
    }
  }

  private async run(): Promise<void> {
    if (this.kind === 'polling') return this.runPolling();
    const headers: Record<string, string> = { Accept: this.kind === 'sse' ? 'text/event-stream' : 'application/x-ndjson' };
    if (this.options.lastEventId !== undefined) headers['Last-Event-ID'] = this.options.lastEventId;
    const query = this.options.after === undefined ? '' : `?after=${encodeURIComponent(this.options.after)}`;
    const response = await this.api.fetch(`/${this.api.resource}/${encodeURIComponent(this.jobId)}/events${query}`, {
      headers,
      signal: this.abort.signal,
    });
    this.status = response.status;
    if (this.kind === 'sse' && response.status === 204) {
      this.markOpened();
      return;
    }
    if (response.status !== 200) throw new Error(`${this.describe()}: answered ${response.status} ${await response.text()}`);
    const contentType = response.headers.get('content-type') ?? '';
    const expected = this.kind === 'sse' ? 'text/event-stream' : 'application/x-ndjson';
    if (!contentType.startsWith(expected)) throw new Error(`${this.describe()}: content-type ${contentType}`);
    this.markOpened();
    if (this.kind === 'ndjson') {
      for await (const line of readLines(response)) {
        const event = JSON.parse(line) as WireEvent;
        if (typeof event?.id !== 'string' || typeof event.type !== 'string') throw new Error(`${this.describe()}: not an event: ${line}`);
        this.push(event);
      }
    } else {
      for await (const item of readSse(response)) this.push(item);
    }
  }

  private async runPolling(): Promise<void> {
    const limit = this.options.limit;
    let after = this.options.after;
    for (;;) {
      const page = await this.api.poll(this.jobId, { after, limit, waitMs: this.options.waitMs ?? 5000 }, this.abort.signal);
      this.pages++;
      if (this.pages === 1) {
        this.status = 200;
        this.markOpened();
      }
      if (page.events.length > (limit ?? 1000))
        throw new Error(`${this.describe()}: a page of ${page.events.length} events over limit ${limit}`);
      const last = page.events.at(-1);
      const expectedNext = last ? last.id : (after ?? '0');
      if (page.next !== expectedNext) throw new Error(`${this.describe()}: next ${page.next} is not ${expectedNext}`);
      if (page.done !== (last !== undefined && isTerminal(last.type))) {
        throw new Error(`${this.describe()}: done=${page.done} on a page ending with ${last?.type ?? 'nothing'}`);
      }
      for (const event of page.events) this.push(event);
      if (page.done) return;
      after = page.next;
    }
  }
}

/** The lines of a streamed body as they arrive (the last one even without a newline). */
export async function* readLines(response: Response): AsyncGenerator<string> {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        yield buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
      }
    }
    buffer += decoder.decode();
    if (buffer) yield buffer;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** The events of an SSE body as they arrive (`retry:` and `: ping` comments skipped). */
export async function* readSse(response: Response): AsyncGenerator<WireEvent> {
  let pending: { id?: string; event?: string; data?: string } = {};
  for await (const line of readLines(response)) {
    if (line === '') {
      if (pending.data !== undefined) {
        if (pending.id === undefined) throw new Error(`SSE event without id: ${JSON.stringify(pending)}`);
        yield { id: pending.id, type: pending.event ?? 'message', data: JSON.parse(pending.data) };
      }
      pending = {};
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') pending.id = value;
    else if (field === 'event') pending.event = value;
    else if (field === 'data') pending.data = pending.data === undefined ? value : `${pending.data}\n${value}`;
    else if (field !== 'retry') throw new Error(`unexpected SSE line ${JSON.stringify(line)}`);
  }
}

/** What a browser-like EventSource saw until the server made it stop. */
export interface EventSourceRun {
  events: WireEvent[];
  /** Every request it made: the `Last-Event-ID` it sent and the status it got. */
  requests: Array<{ lastEventId: string | undefined; status: number }>;
}

const SSE_TYPES = ['started', 'step', 'token', 'progress', 'log', 'completed', 'failed', 'cancelled', 'message'];

/**
 * Follows `url` with the `eventsource` package (reconnecting with `Last-Event-ID` as a browser
 * does) until the connection fails for good; resolves when that was the server's 204 (the
 * cursor is at the terminal event), rejects on any other failure or after `timeoutMs`.
 */
export function followWithEventSource(url: string, timeoutMs = 30_000): Promise<EventSourceRun> {
  const run: EventSourceRun = { events: [], requests: [] };
  return new Promise<EventSourceRun>((resolve, reject) => {
    const source = new EventSource(url, {
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        run.requests.push({ lastEventId: init.headers['Last-Event-ID'], status: response.status });
        return response;
      },
    });
    const timer = setTimeout(() => {
      source.close();
      reject(new Error(`EventSource on ${url} still open after ${timeoutMs} ms: ${JSON.stringify(run.requests)}`));
    }, timeoutMs);
    for (const type of SSE_TYPES) {
      source.addEventListener(type, (event: MessageEvent) => {
        run.events.push({ id: event.lastEventId, type: event.type, data: JSON.parse(event.data as string) });
      });
    }
    source.addEventListener('error', (event) => {
      if (source.readyState !== EventSource.CLOSED) return; // the stream ended: it reconnects
      clearTimeout(timer);
      source.close();
      if (event.code === 204) resolve(run);
      else reject(new Error(`EventSource on ${url} failed: ${event.code} ${event.message}`));
    });
  });
}

/** What a demo build's events must be, as `{ type, data }`, in order. */
export function expectedBuildEvents(steps: number, tokensPerStep: number): Array<{ type: string; data: unknown }> {
  const expected: Array<{ type: string; data: unknown }> = [{ type: 'started', data: { attempt: 1 } }];
  for (let index = 1; index <= steps; index++) {
    expected.push({ type: 'step', data: { index, total: steps } });
    for (let token = 1; token <= tokensPerStep; token++) {
      expected.push({ type: 'token', data: { step: index, index: token, text: `token ${token} of step ${index}` } });
    }
  }
  expected.push({ type: 'completed', data: { result: { steps } } });
  return expected;
}

/** `{ type, data }` of events, for comparing with {@link expectedBuildEvents}. */
export function typesAndData(events: readonly WireEvent[]): Array<{ type: string; data: unknown }> {
  return events.map(({ type, data }) => ({ type, data }));
}

/** `{ id, type, data }` of events: what every delivery (SSE included) must agree on. */
export function withoutTs(events: readonly WireEvent[]): Array<Omit<WireEvent, 'ts'>> {
  return events.map(({ id, type, data }) => ({ id, type, data }));
}

/**
 * Asserts that each reader got exactly `all`: NDJSON and polling readers whole, SSE readers (whose
 * events carry no `ts`) without `ts`. `label` names the job in a failure.
 */
export function expectEveryReaderGot(
  label: Record<string, unknown>,
  all: readonly WireEvent[],
  readers: { ndjson: unknown; polling: unknown; sse: unknown; eventSource: unknown },
): void {
  const expected = { ndjson: all, polling: all, sse: withoutTs(all), eventSource: withoutTs(all) };
  for (const reader of ['ndjson', 'polling', 'sse', 'eventSource'] as const) {
    expect({ ...label, reader, events: readers[reader] }).toEqual({ ...label, reader, events: expected[reader] });
  }
}

/**
 * Throws unless the ids are strictly increasing in received order (hence no duplicates) and
 * exactly one terminal event comes, last.
 */
export function assertOrderedStream(events: readonly WireEvent[], label: string): void {
  for (let i = 1; i < events.length; i++) {
    if (compareEventIds(events[i - 1].id, events[i].id) >= 0) {
      throw new Error(`${label}: event ${i} (${events[i].type} ${events[i].id}) does not come after ${events[i - 1].id}`);
    }
  }
  const terminals = events.filter((event) => isTerminal(event.type));
  if (terminals.length !== 1 || !isTerminal(events.at(-1)!.type)) {
    throw new Error(`${label}: ${terminals.length} terminal events, last event ${events.at(-1)?.type}`);
  }
}
