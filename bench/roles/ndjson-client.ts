import { now, sleep } from '../support/clock.js';
import { EVENT_TYPE, Receipt, type RunSummary, type TokenData } from '../support/payload.js';
import type { RoleMethods } from '../support/rpc.js';

/** One line of an NDJSON event stream: the library's event object, or the raw relay's of the same shape. */
interface StreamedEvent {
  type: string;
  data: unknown;
}

/**
 * An HTTP client reading one NDJSON event stream with `fetch`, as a service consuming a job's
 * events would: every `token` event is timed on receipt of the chunk that completed its line.
 */
export function ndjsonClientRole(): RoleMethods {
  let receipt: Receipt | undefined;
  let reading: Promise<void> | undefined;
  let abort: AbortController | undefined;
  // Held while its body is read: undici aborts the body of a `Response` that was garbage collected,
  // and a reader of `response.body` alone does not keep the `Response` alive.
  let response: Response | undefined;

  return {
    /** Opens `url` and starts reading; resolves once the response's headers are in (200 expected). */
    async arm(params: { url: string; n: number }): Promise<void> {
      const current = (receipt = new Receipt(params.n));
      const controller = (abort = new AbortController());
      response = await fetch(params.url, { headers: { accept: 'application/x-ndjson' }, signal: controller.signal });
      if (response.status !== 200 || !response.body) throw new Error(`GET ${params.url} answered ${response.status}`);
      const body = response.body;
      reading = (async () => {
        const decoder = new TextDecoder();
        let pending = '';
        try {
          for await (const chunk of body) {
            const at = now();
            pending += decoder.decode(chunk as Uint8Array, { stream: true });
            const lines = pending.split('\n');
            pending = lines.pop()!;
            for (const line of lines) {
              if (!line) continue;
              const event = JSON.parse(line) as StreamedEvent;
              if (event.type === EVENT_TYPE) current.add(event.data as TokenData, at);
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
