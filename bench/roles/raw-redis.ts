import { Redis } from 'ioredis';
import { now, paced } from '../support/clock.js';
import { EVENT_TYPE, Receipt, tokenData, type RunSummary, type TokenData } from '../support/payload.js';
import type { RoleMethods } from '../support/rpc.js';

type XReadReply = Array<[key: string, entries: Array<[id: string, fields: string[]]>]> | null;

/** Raw ioredis: a producer doing `XADD` per event (awaited, or pipelined), a consumer doing `XREAD BLOCK`. */
export async function rawRedisRole(config: { redisUrl: string }): Promise<RoleMethods> {
  // Auto-pipelining sends every command issued in one tick as one write: the pipelined producer.
  const redis = new Redis(config.redisUrl, { enableAutoPipelining: false });
  const pipelined = new Redis(config.redisUrl, { enableAutoPipelining: true });
  const blocking = new Redis(config.redisUrl);
  let receipt: Receipt | undefined;
  let reading: Promise<void> | undefined;

  const xadd = (client: Redis, key: string, i: number, readyAt?: number): Promise<string | null> =>
    client.xadd(key, '*', 'type', EVENT_TYPE, 'data', JSON.stringify(tokenData(i, readyAt)));

  return {
    /** Consumer: starts reading `key` from its beginning, with `XREAD BLOCK` (also a library job's stream). */
    arm(params: { key: string; n: number }): void {
      const current = (receipt = new Receipt(params.n));
      reading = (async () => {
        let id = '0-0';
        while (current.received < params.n) {
          const reply = (await blocking.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', params.key, id)) as XReadReply;
          if (!reply) continue;
          const at = now();
          for (const [, entries] of reply) {
            for (const [entryId, fields] of entries) {
              id = entryId;
              // Only handler events count (a library job's stream also holds `started` and its end).
              if (fields[1] === EVENT_TYPE) current.add(JSON.parse(fields[3]) as TokenData, at);
            }
          }
        }
      })();
    },
    async collect(params: { timeoutMs: number; skip?: number; keep?: boolean }): Promise<RunSummary> {
      await Promise.race([reading, receipt!.wait(params.timeoutMs)]);
      return receipt!.summary(params.skip, params.keep);
    },

    /** Producer: `n` events into `key`, in a burst or at `rate`, awaiting every XADD or pipelining them. */
    async produce(params: { key: string; n: number; rate?: number; pipeline: boolean }): Promise<void> {
      if (!params.pipeline) {
        if (params.rate) await paced(params.n, params.rate, (i, readyAt) => xadd(redis, params.key, i, readyAt));
        else for (let i = 0; i < params.n; i++) await xadd(redis, params.key, i);
        return;
      }
      if (params.rate) {
        // Each event goes out at once; events that fall due in the same tick share one write.
        let last: Promise<unknown> = Promise.resolve();
        await paced(params.n, params.rate, (i, readyAt) => void (last = xadd(pipelined, params.key, i, readyAt)));
        await last;
        return;
      }
      // Explicit pipelines of 1000 XADDs, two in flight (faster here than auto-pipelining).
      const inFlight: Array<Promise<unknown>> = [];
      for (let i = 0; i < params.n; i += 1000) {
        const pipeline = redis.pipeline();
        for (let j = i; j < Math.min(i + 1000, params.n); j++) {
          pipeline.xadd(params.key, '*', 'type', EVENT_TYPE, 'data', JSON.stringify(tokenData(j)));
        }
        inFlight.push(pipeline.exec());
        if (inFlight.length >= 2) await inFlight.shift();
      }
      await Promise.all(inFlight);
    },

    close(): void {
      for (const client of [redis, pipelined, blocking]) client.disconnect();
    },
  };
}
