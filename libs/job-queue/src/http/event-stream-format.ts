import type { JobEvent } from '../contract/job-event.js';

/** How a stream of job events is written on the wire. */
export interface EventStreamFormat {
  readonly contentType: string;
  /** Written once, right after the headers. */
  readonly preamble: string;
  /** Written when nothing else was for a while, to keep proxies and clients from timing out; empty for none. */
  readonly heartbeat: string;
  encode(event: JobEvent): string;
  /** True when a client whose cursor is already at the terminal event should get 204 instead of 200. */
  readonly noContentWhenDone: boolean;
}

/**
 * Server-Sent Events: `id:` is the cursor (so `Last-Event-ID` resumes), `event:` the type,
 * `data:` the JSON of `data`. Types and ids never contain line breaks, and JSON escapes its own.
 */
export const SSE_FORMAT: EventStreamFormat = {
  contentType: 'text/event-stream; charset=utf-8',
  preamble: 'retry: 1000\n\n',
  heartbeat: ': ping\n\n',
  encode: (event) => `id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`,
  noContentWhenDone: true,
};

/**
 * Newline-delimited JSON, one event object per line. No heartbeat lines: every line is an event,
 * so that the simplest `split('\n').map(JSON.parse)` client works.
 */
export const NDJSON_FORMAT: EventStreamFormat = {
  contentType: 'application/x-ndjson; charset=utf-8',
  preamble: '',
  heartbeat: '',
  encode: (event) => `${JSON.stringify(event)}\n`,
  noContentWhenDone: false,
};
