import { Redis } from 'ioredis';
import { createResumableStreamContext } from 'resumable-stream/ioredis';
import { now, paced } from '../support/clock.js';
import { EVENT_TYPE, Receipt, tokenData, type RunSummary, type TokenData } from '../support/payload.js';
import type { RoleMethods } from '../support/rpc.js';

/**
 * Vercel's `resumable-stream`: the producer owns a stream of strings (one line per event) and
 * publishes each chunk over Redis pub/sub to every consumer that asked to resume it.
 */
export async function resumableRole(config: { redisUrl: string }): Promise<RoleMethods> {
  const publisher = new Redis(config.redisUrl);
  const subscriber = new Redis(config.redisUrl);
  // Connected before use: a SUBSCRIBE queued ahead of ioredis' ready check breaks the connection.
  await Promise.all([publisher, subscriber].map((client) => new Promise((resolve) => client.once('ready', resolve))));
  const context = createResumableStreamContext({ waitUntil: null, publisher, subscriber, keyPrefix: 'bench' });
  let source: ReadableStreamDefaultController<string> | undefined;
  let receipt: Receipt | undefined;
  let reading: Promise<void> | undefined;

  return {
    /** Producer: creates the resumable stream (it publishes the chunks it is given later). */
    async create(params: { streamId: string }): Promise<void> {
      const stream = await context.createNewResumableStream(
        params.streamId,
        () => new ReadableStream<string>({ start: (controller) => void (source = controller) }),
      );
      // The producer's own reader (its HTTP response, in an app): drain it.
      void (async () => {
        const reader = stream!.getReader();
        while (!(await reader.read()).done);
      })();
    },
    async produce(params: { n: number; rate?: number }): Promise<void> {
      const emit = (i: number, readyAt?: number): void =>
        source!.enqueue(JSON.stringify({ type: EVENT_TYPE, data: tokenData(i, readyAt) }) + '\n');
      if (params.rate) await paced(params.n, params.rate, emit);
      else for (let i = 0; i < params.n; i++) emit(i);
      source!.close();
    },

    /** Consumer: resumes the stream from its start (resolves once the producer answered). */
    async arm(params: { streamId: string; n: number }): Promise<void> {
      const current = (receipt = new Receipt(params.n));
      const stream = await context.resumeExistingStream(params.streamId);
      if (!stream) throw new Error(`stream ${params.streamId} not found`);
      const reader = stream.getReader();
      reading = (async () => {
        let rest = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          const at = now();
          const lines = (rest + value).split('\n');
          rest = lines.pop()!;
          for (const line of lines) if (line) current.add((JSON.parse(line) as { data: TokenData }).data, at);
        }
      })();
    },
    async collect(params: { timeoutMs: number; skip?: number; keep?: boolean }): Promise<RunSummary> {
      await Promise.race([reading, receipt!.wait(params.timeoutMs)]);
      return receipt!.summary(params.skip, params.keep);
    },

    close(): void {
      publisher.disconnect();
      subscriber.disconnect();
    },
  };
}
