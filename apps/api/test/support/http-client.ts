import { EventSource } from 'eventsource';
import { readLines, type BuildBody, type BuildState, type WireEvent as StreamedEvent } from '../../../../test/support/build-api.js';

export type { BuildBody, BuildState };

/** An event as the API serves it over polling and NDJSON (always with `ts`). */
export interface WireEvent extends StreamedEvent {
  ts: number;
}

/** A polling answer. */
export interface EventPage {
  events: WireEvent[];
  next: string;
  done: boolean;
}

/** A small client of the demo API, with an optional bearer token. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token?: string,
    /** The kind of job the helpers below address: `builds` or `reports`. */
    readonly resource: 'builds' | 'reports' = 'builds',
  ) {}

  /** `fetch` on the API, with the client's token (unless `headers.Authorization` is given). */
  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.token !== undefined && !headers.has('authorization')) headers.set('Authorization', `Bearer ${this.token}`);
    return fetch(`${this.baseUrl}${path}`, { ...init, headers });
  }

  /** `POST /<resource>` with a JSON body (none when `body` is undefined). */
  postBuild(body?: unknown, query = ''): Promise<Response> {
    return this.fetch(`/${this.resource}${query}`, {
      method: 'POST',
      ...(body === undefined ? {} : { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }),
    });
  }

  /** Starts a build and returns its id, asserting the 202 `{ jobId }` answer. */
  startBuild(body?: BuildBody): Promise<string> {
    return this.startJob(body);
  }

  /** Starts a job of this client's resource and returns its id, asserting the 202 `{ jobId }` answer. */
  async startJob(body?: unknown): Promise<string> {
    const response = await this.postBuild(body);
    const json = (await response.json()) as { jobId?: unknown };
    if (response.status !== 202 || typeof json.jobId !== 'string') {
      throw new Error(`POST /${this.resource} answered ${response.status} ${JSON.stringify(json)}`);
    }
    return json.jobId;
  }

  async state(id: string): Promise<BuildState> {
    const response = await this.fetch(`/${this.resource}/${encodeURIComponent(id)}`);
    const json = (await response.json()) as BuildState;
    if (response.status !== 200) throw new Error(`GET /${this.resource}/${id} answered ${response.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** One polling page; asserts a 200. */
  async poll(id: string, query: { after?: string; limit?: number; waitMs?: number } = {}): Promise<EventPage> {
    const params = new URLSearchParams({ delivery: 'polling' });
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const response = await this.fetch(`/${this.resource}/${encodeURIComponent(id)}/events?${params}`);
    const json = (await response.json()) as EventPage;
    if (response.status !== 200) throw new Error(`polling ${id} answered ${response.status} ${JSON.stringify(json)}`);
    return json;
  }

  /**
   * Every event after `after` by paging with `limit` (the server's default when undefined),
   * checking each page against the contract: at most `limit` events, `next` is the last id (or
   * the cursor passed), `done` only on the page that holds the terminal event.
   */
  async pollAll(id: string, options: { after?: string; limit?: number } = {}): Promise<{ events: WireEvent[]; pages: number }> {
    const events: WireEvent[] = [];
    let after = options.after;
    for (let pages = 1; ; pages++) {
      const page = await this.poll(id, { after, limit: options.limit });
      const limit = options.limit ?? 1000;
      if (page.events.length > limit) throw new Error(`page of ${page.events.length} events over limit ${limit}`);
      const last = page.events.at(-1);
      const expectedNext = last ? last.id : (after ?? '0');
      if (page.next !== expectedNext) throw new Error(`next ${page.next} is not ${expectedNext}`);
      const terminal = last !== undefined && isTerminal(last.type);
      if (page.done !== terminal) throw new Error(`done=${page.done} on a page whose last event is ${last?.type}`);
      events.push(...page.events);
      if (page.done) return { events, pages };
      if (page.events.length === 0) throw new Error('an empty page with done=false while paging without waitMs');
      after = page.next;
    }
  }

  /** Long-polls until an event matching `predicate` has arrived; returns every event read up to it. */
  async waitForEvent(id: string, predicate: (event: WireEvent) => boolean, after?: string): Promise<WireEvent[]> {
    const events: WireEvent[] = [];
    for (;;) {
      const page = await this.poll(id, { after, waitMs: 10_000 });
      for (const event of page.events) {
        events.push(event);
        if (predicate(event)) return events;
      }
      if (page.done) throw new Error(`job ${id} ended without the awaited event: ${JSON.stringify(events.slice(-3))}`);
      after = page.next;
    }
  }

  /** Waits until the job has ended and returns all its events. */
  waitForEnd(id: string): Promise<WireEvent[]> {
    return this.waitForEvent(id, (event) => isTerminal(event.type));
  }

  cancel(id: string): Promise<Response> {
    return this.fetch(`/${this.resource}/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }
}

export const TERMINAL_TYPES = ['completed', 'failed', 'cancelled'];

export function isTerminal(type: string): boolean {
  return TERMINAL_TYPES.includes(type);
}

export { readLines };

/** Parses an NDJSON body line by line, as it arrives; every line must be one event object. */
export async function* readNdjson(response: Response): AsyncGenerator<WireEvent> {
  for await (const line of readLines(response)) {
    const event = JSON.parse(line) as WireEvent;
    if (typeof event !== 'object' || event === null || typeof event.id !== 'string' || typeof event.type !== 'string') {
      throw new Error(`NDJSON line is not an event: ${line}`);
    }
    yield event;
  }
}

/** Reads a whole NDJSON body. */
export async function ndjsonEvents(response: Response): Promise<WireEvent[]> {
  const events: WireEvent[] = [];
  for await (const event of readNdjson(response)) events.push(event);
  return events;
}

/** One item of a raw SSE body. */
export type SseItem =
  { kind: 'comment'; text: string } | { kind: 'retry'; ms: number } | { kind: 'event'; id?: string; event?: string; data: string };

/** A plain SSE parser for the server's output (fields `id`, `event`, `data`, `retry`, comments). */
export async function* readSse(response: Response): AsyncGenerator<SseItem> {
  let pending: { id?: string; event?: string; data?: string } = {};
  for await (const line of readLines(response)) {
    if (line === '') {
      if (pending.data !== undefined) yield { kind: 'event', id: pending.id, event: pending.event, data: pending.data };
      pending = {};
      continue;
    }
    if (line.startsWith(':')) {
      yield { kind: 'comment', text: line.slice(1).trim() };
      continue;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'retry') yield { kind: 'retry', ms: Number(value) };
    else if (field === 'id') pending.id = value;
    else if (field === 'event') pending.event = value;
    else if (field === 'data') pending.data = pending.data === undefined ? value : `${pending.data}\n${value}`;
    else throw new Error(`unexpected SSE line ${JSON.stringify(line)}`);
  }
}

/** The events of an SSE body, as `{ id, type, data }` with `data` parsed. */
export async function sseEvents(response: Response): Promise<Array<Omit<WireEvent, 'ts'>>> {
  const events: Array<Omit<WireEvent, 'ts'>> = [];
  for await (const item of readSse(response)) {
    if (item.kind === 'event') events.push({ id: item.id ?? '', type: item.event ?? 'message', data: JSON.parse(item.data) });
  }
  return events;
}

/** Asserts an error answer: the status, a JSON body `{ statusCode, error, message }` with a message matching `message`. */
export async function expectError(response: Response, status: number, message?: RegExp): Promise<Record<string, unknown>> {
  const text = await response.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`${response.status} answer is not JSON: ${text.slice(0, 200)}`);
  }
  expect({ status: response.status, body }).toEqual({ status, body: expect.objectContaining({ statusCode: status }) });
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  expect(body.error).toEqual(expect.any(String));
  expect(body.message).toEqual(expect.any(String));
  expect((body.message as string).length).toBeGreaterThan(5);
  if (message) expect(body.message).toMatch(message);
  return body;
}

/** What a build's events must be, as `{ type, data }`, in order. */
export function expectedBuildEvents(
  steps: number,
  tokensPerStep: number,
  end: { completed: true } | { failAtStep: number },
): Array<{ type: string; data: unknown }> {
  const expected: Array<{ type: string; data: unknown }> = [{ type: 'started', data: { attempt: 1 } }];
  const lastStep = 'failAtStep' in end ? end.failAtStep : steps;
  for (let index = 1; index <= lastStep; index++) {
    expected.push({ type: 'step', data: { index, total: steps } });
    if ('failAtStep' in end && index === end.failAtStep) break;
    for (let token = 1; token <= tokensPerStep; token++) {
      expected.push({ type: 'token', data: { step: index, index: token, text: expect.any(String) } });
    }
  }
  if ('completed' in end) expected.push({ type: 'completed', data: { result: { steps } } });
  else expected.push({ type: 'failed', data: { error: { message: expect.stringContaining(`step ${end.failAtStep}`) } } });
  return expected;
}

/** `{ type, data }` of events, for comparing with {@link expectedBuildEvents}. */
export function typesAndData(events: ReadonlyArray<{ type: string; data: unknown }>): Array<{ type: string; data: unknown }> {
  return events.map(({ type, data }) => ({ type, data }));
}

/** Ids are non-empty strings, all different; `ts` is a number that never goes back. */
export function expectWellFormed(events: readonly WireEvent[]): void {
  const ids = new Set<string>();
  let previousTs = 0;
  for (const event of events) {
    if (typeof event.id !== 'string' || event.id === '' || ids.has(event.id)) throw new Error(`bad or repeated id ${event.id}`);
    ids.add(event.id);
    if (typeof event.ts !== 'number' || event.ts < previousTs) throw new Error(`bad ts ${event.ts} after ${previousTs}`);
    previousTs = event.ts;
  }
}

/** What an EventSource saw: its events and every request it made. */
export interface EventSourceRun {
  events: Array<{ id: string; type: string; data: unknown }>;
  requests: Array<{ lastEventId: string | undefined; status: number }>;
  /** Codes of the `error` events (undefined for a stream that ended, a status for a failed connection). */
  errors: Array<number | undefined>;
}

export interface FollowOptions {
  /** Extra request headers (e.g. Authorization), on every request. */
  headers?: Record<string, string>;
  /** `Last-Event-ID` of the first request, as a browser sends after a page reload with a stored id. */
  initialLastEventId?: string;
  /** Ends the first response's body after this many bytes, as a dropped connection would. */
  cutFirstResponseAfterBytes?: number;
  timeoutMs?: number;
}

const SSE_TYPES = ['started', 'step', 'token', 'completed', 'failed', 'cancelled', 'message'];

function truncated(response: Response, bytes: number): Response {
  const reader = response.body!.getReader();
  let left = bytes;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) return controller.close();
      if (value.byteLength >= left) {
        controller.enqueue(value.subarray(0, left));
        controller.close();
        await reader.cancel();
        return;
      }
      left -= value.byteLength;
      controller.enqueue(value);
    },
    cancel: () => reader.cancel(),
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

/**
 * Follows `url` with the `eventsource` package's EventSource, reconnecting with `Last-Event-ID`
 * as a browser does, until the connection is failed for good (the server's 204, or another
 * status). Rejects when it fails with anything but 204, or on timeout.
 */
export function followWithEventSource(url: string, options: FollowOptions = {}): Promise<EventSourceRun> {
  const run: EventSourceRun = { events: [], requests: [], errors: [] };
  return new Promise<EventSourceRun>((resolve, reject) => {
    const source = new EventSource(url, {
      fetch: async (input, init) => {
        const headers: Record<string, string> = { ...init.headers, ...options.headers };
        if (run.requests.length === 0 && options.initialLastEventId !== undefined) headers['Last-Event-ID'] = options.initialLastEventId;
        const response = await fetch(input, { ...init, headers });
        run.requests.push({ lastEventId: headers['Last-Event-ID'], status: response.status });
        if (run.requests.length === 1 && options.cutFirstResponseAfterBytes !== undefined && response.status === 200) {
          return truncated(response, options.cutFirstResponseAfterBytes);
        }
        return response;
      },
    });
    const timer = setTimeout(() => {
      source.close();
      reject(new Error(`EventSource still open after ${options.timeoutMs ?? 20_000} ms: ${JSON.stringify(run.requests)}`));
    }, options.timeoutMs ?? 20_000);
    for (const type of SSE_TYPES) {
      source.addEventListener(type, (event: MessageEvent) => {
        run.events.push({ id: event.lastEventId, type: event.type, data: JSON.parse(event.data as string) });
      });
    }
    source.addEventListener('error', (event) => {
      run.errors.push(event.code);
      if (source.readyState !== EventSource.CLOSED) return; // a stream that ended: it reconnects
      clearTimeout(timer);
      source.close();
      if (event.code === 204) resolve(run);
      else reject(new Error(`EventSource failed: ${event.code} ${event.message}`));
    });
  });
}
