import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import type { QueueEventsBridge } from '../src/backends/bullmq/foreign-workers/queue-events-bridge.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { startLeadingBridge } from './support/leading-bridge.js';

/** A read as the bridge reported it to its pause, and the wait it was told to make. */
interface Read {
  entries: number;
  at: number;
  waitMs: number;
}

/**
 * The foreign-worker bridge's read loop honours its pause (see `BusyStreamPause`, whose decisions
 * have a test of their own): after a read it was told to wait after, the next read comes no sooner,
 * and it returns what came meanwhile as one batch.
 */
describe('the foreign-worker bridge waits between reads as its pause says', () => {
  let redis: RedisServer;
  let client: Redis;
  let queue: Queue;
  let bridge: QueueEventsBridge;
  const prefix = 'pause';
  const reads: Read[] = [];
  /** Long beside 50 round trips to a local Redis: the updates fit in one wait with a wide margin. */
  const WAIT_MS = 1000;

  beforeAll(async () => {
    redis = await RedisServer.start();
    client = new Redis(redis.url);
    queue = new Queue('reports', { connection: { url: redis.url }, prefix });
    bridge = await startLeadingBridge(client, new RedisKeys(prefix), {
      afterRead(entries: number, at: number): number {
        const waitMs = entries ? WAIT_MS : 0;
        reads.push({ entries, at, waitMs });
        return waitMs;
      },
    });
  });

  afterAll(async () => {
    await bridge?.stop();
    await queue?.close();
    client?.disconnect();
    await redis?.destroy();
  });

  it('reads again no sooner than it was told to, and then gets everything that came meanwhile in one read', async () => {
    expect(bridge.status()[0].leading).toBe(true);
    const job = await queue.add('report', { pages: 50 });
    // The job's first entries (added, waiting) make the bridge read, and then wait WAIT_MS.
    await pollUntil(
      async () => reads.find((read) => read.entries > 0),
      (read) => read !== undefined,
      10_000,
      5,
    );
    for (let page = 1; page <= 50; page++) await job.updateProgress({ page, pages: 50 });
    const writtenAt = performance.now();
    // Every entry of the job read: added, waiting and the 50 progress entries (at least).
    await pollUntil(
      async () => bridge.status()[0].entriesRead,
      (entries) => entries >= 52,
      10_000,
      20,
    );
    const withEntries = reads.filter((read) => read.entries > 0);
    expect(bridge.status()[0]).toMatchObject({
      reads: withEntries.length,
      entriesRead: withEntries.reduce((sum, read) => sum + read.entries, 0),
    });
    for (let i = 1; i < reads.length; i++) {
      const gap = reads[i].at - reads[i - 1].at;
      expect({ read: i, waited: gap >= reads[i - 1].waitMs - 1 }).toEqual({ read: i, waited: true });
    }
    // The 50 updates went in while the bridge waited after its first read (WAIT_MS is far longer
    // than 50 round trips to a local Redis; this checks it rather than assuming it) ...
    expect(writtenAt).toBeLessThan(withEntries[0].at + withEntries[0].waitMs);
    // ... so the read after that wait returned all of them at once.
    const next = withEntries.find((read) => read.at >= withEntries[0].at + withEntries[0].waitMs - 1);
    expect(next?.entries).toBeGreaterThanOrEqual(50);
  });
});
