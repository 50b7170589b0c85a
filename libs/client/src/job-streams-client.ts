import { retryDelayMs, type BackoffOptions } from './backoff.js';
import { JobStreamError } from './job-stream-error.js';
import { TERMINAL_TYPES, type JobStreamEvent } from './job-stream-event.js';
import { SseParser } from './sse-parser.js';

/** How {@link JobStreamsClient.follow} gets events. */
export type JobStreamTransport =
  /** Server-Sent Events, falling back to long-polling when the answer is not an event stream (a buffering proxy) or the runtime cannot stream a response body. */
  'auto' | 'sse' | 'polling';

/** Options of a {@link JobStreamsClient}. */
export interface JobStreamsClientOptions {
  /**
   * Where the API is: one URL (a load balancer), or several instances, tried in turn after a
   * failure. A follow resumes on the next one from the last event it got.
   */
  baseUrl: string | readonly string[];
  /** Bearer token, or a function asked before every request (so a refreshed token is used). */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** Default `auto`. */
  transport?: JobStreamTransport;
  /** Waits between tries after a failure. */
  backoff?: BackoffOptions;
  /** Failed tries in a row (no event received in between) before a follow gives up with a {@link JobStreamError}; default unlimited. */
  maxRetries?: number;
  /** Long-polling: how long each request may wait for something new (ms, default 25000; the server allows up to 30000). */
  pollWaitMs?: number;
  /**
   * A stream that brings nothing for this long (ms, default 45000: three of the server's 15 s
   * heartbeats) is taken as dead and retried elsewhere: a lost host or a silent network partition
   * leaves a connection open that never ends on its own. A long-poll gets `pollWaitMs` plus this.
   */
  idleTimeoutMs?: number;
  /** Told before every retry, e.g. to log it. */
  onRetry?: (retry: RetryInfo) => void;
  /** The `fetch` to use (default the global one). */
  fetch?: typeof fetch;
}

/** What {@link JobStreamsClientOptions.onRetry} is told. */
export interface RetryInfo {
  /** Failed tries in a row so far. */
  attempt: number;
  delayMs: number;
  /** Why the last try failed: `HTTP 503`, `stream ended`, a network error's message. */
  reason: string;
  /** The instance the next try goes to. */
  baseUrl: string;
  /** The cursor it resumes from (undefined: from the start). */
  after?: string;
}

/** Options of {@link JobStreamsClient.follow}. */
export interface FollowJobOptions {
  /** Resume after this event id (default: from the first event). */
  after?: string;
  /** Ends the follow: the iteration then simply finishes. */
  signal?: AbortSignal;
}

/** How one request of a follow ended. */
type Outcome =
  | { kind: 'terminal' }
  /** The caller's signal fired: the follow ends. */
  | { kind: 'aborted' }
  | { kind: 'again' }
  | { kind: 'retry'; reason: string; retryAfter?: string | null }
  | { kind: 'polling' };

/** The cursor of a follow, moved by each event it yields. */
interface FollowState {
  cursor?: string;
  /** Events yielded by the current request. */
  received: number;
}

const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);

/**
 * A small typed client for the event streams of a job API built with `nestjs-job-streams` (the
 * demo's `/builds` and `/reports` routes, or any controller using its HTTP helpers). Runs in Node
 * 20+ and in browsers (only `fetch`, streams and `TextDecoder`).
 *
 * `follow` yields every event of a job once, in order, and ends after the terminal event. A
 * dropped connection, a 502/503/504 or a network error is retried with backoff (honouring
 * `Retry-After`) on the next instance, resuming after the last event received; refusals (404, 400,
 * 401) end it with a {@link JobStreamError}.
 *
 * @example
 * ```ts
 * const client = new JobStreamsClient({ baseUrl: 'https://api.example.com', token: () => session.token });
 * for await (const event of client.follow('builds', jobId)) console.log(event.type, event.data);
 * ```
 */
export class JobStreamsClient {
  private readonly bases: readonly string[];
  private next = 0;

  constructor(private readonly options: JobStreamsClientOptions) {
    const bases = typeof options.baseUrl === 'string' ? [options.baseUrl] : [...options.baseUrl];
    if (!bases.length) throw new TypeError('baseUrl must name at least one URL');
    this.bases = bases.map((base) => base.replace(/\/+$/, ''));
  }

  /**
   * Follows job `id` of `collection` (the route: `builds`, `reports`, ...) until its terminal
   * event. Breaking out of the loop, or `signal`, closes the connection.
   *
   * @throws JobStreamError when the server refuses the follow, or retries run out.
   */
  async *follow<TData = unknown>(
    collection: string,
    id: string,
    options: FollowJobOptions = {},
  ): AsyncGenerator<JobStreamEvent<TData>, void, undefined> {
    const local = new AbortController();
    const abort = (): void => local.abort();
    options.signal?.addEventListener('abort', abort, { once: true });
    if (options.signal?.aborted) return;
    const path = `/${encodeURIComponent(collection)}/${encodeURIComponent(id)}/events`;
    const state: FollowState = { cursor: options.after, received: 0 };
    let transport = this.options.transport ?? 'auto';
    if (transport === 'auto' && typeof ReadableStream === 'undefined') transport = 'polling';
    let failures = 0;
    try {
      for (;;) {
        const base = this.bases[this.next % this.bases.length];
        state.received = 0;
        let outcome: Outcome;
        try {
          outcome =
            transport === 'polling'
              ? yield* this.pollOnce<TData>(base + path, state, local.signal)
              : yield* this.sseOnce<TData>(base + path, state, local.signal, transport === 'auto');
        } catch (error) {
          if (local.signal.aborted) return;
          if (error instanceof JobStreamError) throw error;
          outcome = { kind: 'retry', reason: (error as Error).message || String(error) };
        }
        if (outcome.kind === 'terminal' || outcome.kind === 'aborted') return;
        if (outcome.kind === 'polling') {
          transport = 'polling';
          continue;
        }
        if (state.received) failures = 0;
        if (outcome.kind === 'again') continue;
        failures++;
        if (this.options.maxRetries !== undefined && failures > this.options.maxRetries) {
          throw new JobStreamError(`Gave up following ${collection}/${id} after ${failures} failed tries (last: ${outcome.reason})`);
        }
        this.next++;
        const delayMs = retryDelayMs(failures, this.options.backoff ?? {}, outcome.retryAfter);
        this.options.onRetry?.({
          attempt: failures,
          delayMs,
          reason: outcome.reason,
          baseUrl: this.bases[this.next % this.bases.length],
          after: state.cursor,
        });
        if (!(await sleep(delayMs, local.signal))) return;
      }
    } finally {
      options.signal?.removeEventListener('abort', abort);
      local.abort();
    }
  }

  /** One SSE request: yields its events; says how it ended. */
  private async *sseOnce<TData>(
    url: string,
    state: FollowState,
    signal: AbortSignal,
    fallback: boolean,
  ): AsyncGenerator<JobStreamEvent<TData>, Outcome, undefined> {
    const headers: Record<string, string> = { Accept: 'text/event-stream', ...(await this.auth()) };
    if (state.cursor !== undefined) headers['Last-Event-ID'] = state.cursor;
    const idleMs = this.options.idleTimeoutMs ?? 45_000;
    const watchdog = new IdleWatchdog(signal, idleMs);
    try {
      return yield* this.readSse<TData>(url, headers, state, signal, watchdog, fallback);
    } catch (error) {
      if (watchdog.fired) return { kind: 'retry', reason: `no data for ${idleMs} ms` };
      throw error;
    } finally {
      watchdog.clear();
    }
  }

  private async *readSse<TData>(
    url: string,
    headers: Record<string, string>,
    state: FollowState,
    signal: AbortSignal,
    watchdog: IdleWatchdog,
    fallback: boolean,
  ): AsyncGenerator<JobStreamEvent<TData>, Outcome, undefined> {
    const response = await this.fetch(url, { headers, signal: watchdog.signal });
    if (response.status === 204) return { kind: 'terminal' }; // the cursor is at the terminal event already
    const refused = await this.refusal(response);
    if (refused) return refused;
    if (!/^text\/event-stream/i.test(response.headers.get('content-type') ?? '') || !response.body) {
      await response.body?.cancel();
      if (fallback) return { kind: 'polling' };
      throw new JobStreamError(
        `Expected an event stream from ${url}, got ${response.headers.get('content-type') ?? 'no content type'}`,
        response.status,
      );
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return { kind: 'retry', reason: 'stream ended before the terminal event' };
        watchdog.touch();
        for (const frame of parser.push(decoder.decode(value, { stream: true }))) {
          if (frame.id === undefined || frame.id === state.cursor) continue;
          const event: JobStreamEvent<TData> = { id: frame.id, type: frame.event, data: parseData<TData>(frame.data, url) };
          state.cursor = event.id;
          state.received++;
          yield event;
          // The caller may have aborted while it had the event: nothing more after that.
          if (signal.aborted) return { kind: 'aborted' };
          if (TERMINAL_TYPES.includes(event.type)) return { kind: 'terminal' };
        }
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }

  /** One long-poll: yields the page's events; says how it ended. */
  private async *pollOnce<TData>(
    url: string,
    state: FollowState,
    signal: AbortSignal,
  ): AsyncGenerator<JobStreamEvent<TData>, Outcome, undefined> {
    const waitMs = this.options.pollWaitMs ?? 25_000;
    const query = new URLSearchParams({ delivery: 'polling', waitMs: String(waitMs) });
    if (state.cursor !== undefined) query.set('after', state.cursor);
    const idleMs = this.options.idleTimeoutMs ?? 45_000;
    const watchdog = new IdleWatchdog(signal, waitMs + idleMs);
    let page: { events: Array<JobStreamEvent<TData>>; next: string; done: boolean };
    try {
      const response = await this.fetch(`${url}?${query}`, {
        headers: { Accept: 'application/json', ...(await this.auth()) },
        signal: watchdog.signal,
      });
      const refused = await this.refusal(response);
      if (refused) return refused;
      page = (await response.json()) as typeof page;
    } catch (error) {
      if (watchdog.fired) return { kind: 'retry', reason: `no answer within ${waitMs + idleMs} ms` };
      throw error;
    } finally {
      watchdog.clear();
    }
    for (const event of page.events) {
      if (event.id === state.cursor) continue;
      state.cursor = event.id;
      state.received++;
      yield event;
      if (signal.aborted) return { kind: 'aborted' };
    }
    state.cursor = page.next;
    return page.done ? { kind: 'terminal' } : { kind: 'again' };
  }

  /** A retry for transient statuses; throws for refusals; undefined for 2xx. */
  private async refusal(response: Response): Promise<Outcome | undefined> {
    if (response.ok) return undefined;
    const retryAfter = response.headers.get('retry-after');
    let body: { message?: unknown; code?: unknown } = {};
    try {
      body = (await response.json()) as typeof body;
    } catch {
      // not the API's JSON error (a proxy's page): the status says enough
    }
    if (RETRYABLE_STATUSES.has(response.status)) return { kind: 'retry', reason: `HTTP ${response.status}`, retryAfter };
    const message = typeof body.message === 'string' ? body.message : `HTTP ${response.status}`;
    throw new JobStreamError(message, response.status, typeof body.code === 'string' ? body.code : undefined);
  }

  private async auth(): Promise<Record<string, string>> {
    const token = typeof this.options.token === 'function' ? await this.options.token() : this.options.token;
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  private fetch(url: string, init: RequestInit): Promise<Response> {
    return (this.options.fetch ?? fetch)(url, init);
  }
}

/** The `data:` of an SSE frame; a frame that is not JSON ends the follow (retrying would read it again forever). */
function parseData<TData>(data: string, url: string): TData {
  if (data === '') return null as TData;
  try {
    return JSON.parse(data) as TData;
  } catch {
    throw new JobStreamError(`Malformed event data from ${url}: not JSON`);
  }
}

/**
 * A request's own abort: fires when the follow's `signal` does, or when nothing arrived for
 * `idleMs` (reset by {@link touch}); {@link fired} tells the second case apart.
 */
class IdleWatchdog {
  private readonly controller = new AbortController();
  private timer?: ReturnType<typeof setTimeout>;
  private readonly onAbort = (): void => this.controller.abort();
  fired = false;

  constructor(
    private readonly parent: AbortSignal,
    private readonly idleMs: number,
  ) {
    parent.addEventListener('abort', this.onAbort, { once: true });
    if (parent.aborted) this.controller.abort();
    this.touch();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fired = true;
      this.controller.abort();
    }, this.idleMs);
  }

  clear(): void {
    clearTimeout(this.timer);
    this.parent.removeEventListener('abort', this.onAbort);
  }
}

/** Waits `ms`; false when `signal` fired first. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (completed: boolean): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(completed);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
