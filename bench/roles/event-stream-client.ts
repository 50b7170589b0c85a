import { SseParser } from 'nestjs-job-streams-client';
import { now, sleep } from '../support/clock.js';
import { EVENT_TYPE, Receipt, type RunSummary, type TokenData } from '../support/payload.js';
import type { RoleMethods } from '../support/rpc.js';
import type { ProgressValue } from './progress-processor.js';

/** How the job's events come: NDJSON lines, or Server-Sent Events. */
export type StreamFormat = 'ndjson' | 'sse';

/** One event of a stream: the library's event object, or the raw relay's of the same shape. */
interface StreamedEvent {
  type: string;
  data: unknown;
}

/**
 * The bench's payload in an event: a `token` event's data (a `@JobHandler`'s `emit`, or the raw
 * relay's), or a `progress` event's whose value is a token (a BullMQ processor's `updateProgress`).
 */
function tokenOf(event: StreamedEvent): TokenData | undefined {
  if (event.type === EVENT_TYPE) return event.data as TokenData;
  if (event.type === 'progress' && (event.data as ProgressValue | null)?.type === EVENT_TYPE) return (event.data as ProgressValue).data;
  return undefined;
}

/** Turns what arrived into complete events, keeping the incomplete rest. */
interface EventDecoder {
  push(chunk: Uint8Array): StreamedEvent[];
}

/** NDJSON: one event object per line. */
function ndjsonDecoder(): EventDecoder {
  const decoder = new TextDecoder();
  let pending = '';
  return {
    push(chunk) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split('\n');
      pending = lines.pop()!;
      return lines.filter((line) => line).map((line) => JSON.parse(line) as StreamedEvent);
    },
  };
}

/** Server-Sent Events, parsed by the library's own client (`SseParser`); frames without data (comments, `retry:`) are none. */
function sseDecoder(): EventDecoder {
  const decoder = new TextDecoder();
  const parser = new SseParser();
  return {
    push(chunk) {
      return parser
        .push(decoder.decode(chunk, { stream: true }))
        .filter((frame) => frame.data)
        .map((frame) => ({ type: frame.event, data: JSON.parse(frame.data) as unknown }));
    },
  };
}

/**
 * An HTTP client reading one job's event stream with `fetch`, as a service or a browser consuming
 * a job's events would: NDJSON or SSE, every event carrying the bench's payload timed on receipt of
 * the chunk that completed it.
 */
export function eventStreamClientRole(): RoleMethods {
  let receipt: Receipt | undefined;
  let reading: Promise<void> | undefined;
  let abort: AbortController | undefined;
  // Held while its body is read: undici aborts the body of a `Response` that was garbage collected,
  // and a reader of `response.body` alone does not keep the `Response` alive.
  let response: Response | undefined;

  return {
    /** Opens `url` and starts reading; resolves once the response's headers are in (200 expected). */
    async arm(params: { url: string; n: number; format?: StreamFormat }): Promise<void> {
      const format = params.format ?? 'ndjson';
      const current = (receipt = new Receipt(params.n));
      const controller = (abort = new AbortController());
      const accept = format === 'sse' ? 'text/event-stream' : 'application/x-ndjson';
      response = await fetch(params.url, { headers: { accept }, signal: controller.signal });
      if (response.status !== 200 || !response.body) throw new Error(`GET ${params.url} answered ${response.status}`);
      const body = response.body;
      const decoder = format === 'sse' ? sseDecoder() : ndjsonDecoder();
      reading = (async () => {
        try {
          for await (const chunk of body) {
            const at = now();
            for (const event of decoder.push(chunk as Uint8Array)) {
              const token = tokenOf(event);
              if (token) current.add(token, at);
            }
          }
        } catch (error) {
          if (!controller.signal.aborted) throw error;
        }
      })();
    },

    /** Waits for every event of the armed stream (or `timeoutMs`), then closes it. */
    async collect(params: { timeoutMs: number; skip?: number; keep?: boolean }): Promise<RunSummary> {
      await Promise.race([reading, receipt!.wait(params.timeoutMs)]);
      abort!.abort();
      // A body whose stream stalled may not settle on abort either: the short count is the result.
      await Promise.race([reading, sleep(1000)]);
      return receipt!.summary(params.skip, params.keep);
    },

    close(): void {
      abort?.abort();
    },
  };
}
