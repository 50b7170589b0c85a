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

/** Splits what arrived into complete records (lines, or SSE blocks), keeping the incomplete rest. */
class RecordSplitter {
  private pending = '';
  private readonly decoder = new TextDecoder();

  constructor(private readonly separator: string) {}

  push(chunk: Uint8Array): string[] {
    this.pending += this.decoder.decode(chunk, { stream: true });
    const records = this.pending.split(this.separator);
    this.pending = records.pop()!;
    return records;
  }
}

/**
 * The event of one SSE block (records split on a blank line, `\n` line ends, as the library writes
 * them): its `event:` field and its `data:` lines joined by `\n` (one optional space after the
 * colon dropped); undefined for blocks without both, such as comments and the `retry:` preamble.
 */
function sseEvent(block: string): StreamedEvent | undefined {
  let type: string | undefined;
  const data: string[] = [];
  for (const line of block.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue; // a comment (`: ping`) or a line without a field
    const value = line.slice(line[colon + 1] === ' ' ? colon + 2 : colon + 1);
    const field = line.slice(0, colon);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  return type === undefined || !data.length ? undefined : { type, data: JSON.parse(data.join('\n')) };
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
      const splitter = new RecordSplitter(format === 'sse' ? '\n\n' : '\n');
      const parse = format === 'sse' ? sseEvent : (line: string) => (line ? (JSON.parse(line) as StreamedEvent) : undefined);
      reading = (async () => {
        try {
          for await (const chunk of body) {
            const at = now();
            for (const record of splitter.push(chunk as Uint8Array)) {
              const event = parse(record);
              const token = event && tokenOf(event);
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
