import { Redis } from 'ioredis';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { useScriptsRedis } from './support/scripts-redis.js';

const RETENTION_MS = 60_000;

/**
 * The scripts that end a job (`finish-job`, `abandon-unread`, a foreign worker's terminal entry in
 * `bridge-entry`) compact its stream: Redis allocates a stream's last node at
 * `stream-node-max-bytes` (4 KB by default) and keeps that while the node is not full, so without
 * it every short job held about 4 KB for its whole retention. Against a real Redis with its
 * default settings: the memory goes down when short jobs end, the streams read exactly as before
 * plus their terminal event, and a reader blocked on a stream gets that event.
 */
describe("a job's ended stream is compacted", () => {
  const redis = useScriptsRedis();
  const keys = new RedisKeys('compact');
  let jobs = 0;

  const usedMemory = async (): Promise<number> => Number(/^used_memory:(\d+)/m.exec(await redis.client.info('memory'))![1]);

  /** A `@JobHandler`-like job whose attempt started and emitted `emitted` events. */
  async function runningJob(emitted = 0): Promise<{ meta: string; events: string }> {
    const id = `job-${++jobs}`;
    const [meta, events] = [keys.meta('jobs', id), keys.events('jobs', id)];
    await redis.client.hset(meta, { name: 'noop', owner: 'alice', state: 'queued', attempt: 0, maxAttempts: 1, createdAt: 1 });
    expect(await redis.scripts.startAttempt(meta, events, Date.now(), 100_000, `run-${id}`)).toMatchObject({ status: 'ok', attempt: 1 });
    for (let i = 0; i < emitted; i++) await redis.client.xadd(events, '*', 'type', 'token', 'data', JSON.stringify({ i }));
    return { meta, events };
  }

  const finish = (job: { meta: string; events: string }) =>
    redis.scripts.finishJob(
      job.meta,
      job.events,
      'completed',
      '{"result":null}',
      Date.now(),
      RETENTION_MS,
      { field: 'result', value: 'null' },
      1,
    );

  it('short jobs give the memory of their streams back when they end; each stream reads as before, plus its terminal event, and expires', async () => {
    const short = await Promise.all(Array.from({ length: 300 }, () => runningJob(2)));
    const before = await Promise.all(short.map((job) => redis.client.xrange(job.events, '-', '+')));
    const memoryBefore = await usedMemory();
    const ended = await Promise.all(short.map(finish));
    // About 4 KB of node allocation each, minus the terminal event and the metadata's new fields.
    expect(memoryBefore - (await usedMemory())).toBeGreaterThan(300 * 2048);
    for (const [i, job] of short.entries()) {
      expect(ended[i]).toMatchObject({ status: 'ok' });
      const after = await redis.client.xrange(job.events, '-', '+');
      expect(after.slice(0, -1)).toEqual(before[i]);
      expect(after.at(-1)).toEqual([(ended[i] as { eventId: string }).eventId, ['type', 'completed', 'data', '{"result":null}']]);
      expect(await redis.client.pttl(job.events)).toBeGreaterThan(RETENTION_MS - 10_000);
      expect(await redis.client.pttl(job.meta)).toBeGreaterThan(RETENTION_MS - 10_000);
      expect(await redis.client.exists(RedisKeys.spareOfEvents(job.events))).toBe(0);
    }
  });

  it('a long stream ends the same way, uncopied: its entries and TTL as for a short one', async () => {
    const job = await runningJob(150);
    const before = await redis.client.xrange(job.events, '-', '+');
    expect(await finish(job)).toMatchObject({ status: 'ok' });
    const after = await redis.client.xrange(job.events, '-', '+');
    expect(after).toHaveLength(before.length + 1);
    expect(after.slice(0, -1)).toEqual(before);
    expect(await redis.client.pttl(job.events)).toBeGreaterThan(RETENTION_MS - 10_000);
  });

  it('a reader blocked on the stream gets the terminal event from the compacted stream', async () => {
    const job = await runningJob(2);
    const [last] = (await redis.client.xrevrange(job.events, '+', '-', 'COUNT', 1))[0];
    const reader = new Redis(redis.server.url);
    try {
      const read = reader.xread('BLOCK', 10_000, 'STREAMS', job.events, last);
      // The read is parked on the stream before the job ends (a Redis-side state: polled, bounded).
      const blocked = await pollUntil(
        async () => Number(/^blocked_clients:(\d+)/m.exec(await redis.client.info('clients'))![1]),
        (count) => count > 0,
        5_000,
        5,
      );
      expect(blocked).toBe(1);
      const ended = await finish(job);
      const reply = (await read) as Array<[string, Array<[string, string[]]>]>;
      expect(reply[0][1]).toEqual([[(ended as { eventId: string }).eventId, ['type', 'completed', 'data', '{"result":null}']]]);
    } finally {
      reader.disconnect();
    }
  });

  it("an abandoned job and a foreign worker's job are compacted when they end too", async () => {
    const abandoned = await Promise.all(Array.from({ length: 150 }, () => runningJob(1)));
    await Promise.all(abandoned.map((job) => redis.client.hset(job.meta, 'abandonAfterMs', 1, 'readAt', 0)));
    const foreign = await Promise.all(
      Array.from({ length: 150 }, async () => {
        const id = `foreign-${++jobs}`;
        const [meta, events] = [keys.meta('reports', id), keys.events('reports', id)];
        const limits = { now: Date.now(), retentionMs: RETENTION_MS, maxEvents: 100 };
        const create = { name: 'report', maxAttempts: 1, createdAt: Date.now() };
        expect(await redis.scripts.bridgeEntry(meta, events, '1000-0', { kind: 'start', activeMs: 1000 }, limits, create)).toBe('ok');
        return { meta, events, limits };
      }),
    );
    const memoryBefore = await usedMemory();
    expect(new Set(await Promise.all(abandoned.map((job) => redis.scripts.abandonUnread(job.meta, job.events, RETENTION_MS))))).toEqual(
      new Set(['abandoned']),
    );
    const terminal = { kind: 'terminal', state: 'completed', data: '{"result":1}', field: 'result', value: '1' } as const;
    expect(
      new Set(await Promise.all(foreign.map((job) => redis.scripts.bridgeEntry(job.meta, job.events, '1000-1', terminal, job.limits)))),
    ).toEqual(new Set(['ok']));
    expect(memoryBefore - (await usedMemory())).toBeGreaterThan(300 * 2048);
    expect((await redis.client.xrange(abandoned[0].events, '-', '+')).map(([, fields]) => fields[1])).toEqual([
      'started',
      'token',
      'cancelled',
    ]);
    expect((await redis.client.xrange(foreign[0].events, '-', '+')).map(([, fields]) => fields[1])).toEqual(['started', 'completed']);
    expect(await redis.client.pttl(foreign[0].events)).toBeGreaterThan(RETENTION_MS - 10_000);
  });
});
