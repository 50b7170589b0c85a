import { Redis } from 'ioredis';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import type { QueueEventsBridge } from '../src/backends/bullmq/foreign-workers/queue-events-bridge.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { startLeadingBridge } from './support/leading-bridge.js';

/**
 * The foreign-worker bridge's lag, as `JobQueue.bridgeStatus()` and the metrics show it: entries
 * left and the age of the last one applied while it catches up, none once it reached the stream's head.
 * The bridge waits after each read that returned entries (its pause, given here), so each state
 * holds long enough to be seen.
 */
describe('the foreign-worker bridge reports how far behind the events stream it is', () => {
  let redis: RedisServer;
  let client: Redis;
  let bridge: QueueEventsBridge;
  const prefix = 'lag';
  const keys = new RedisKeys(prefix);
  const WAIT_MS = 1500;

  beforeAll(async () => {
    redis = await RedisServer.start();
    client = new Redis(redis.url);
    bridge = await startLeadingBridge(client, keys, { afterRead: (entries: number) => (entries ? WAIT_MS : 0) });
  });

  afterAll(async () => {
    await bridge?.stop();
    client?.disconnect();
    await redis?.destroy();
  });

  it('after a full batch: the entries after it and the age of its last entry; after the read that reaches the head: none', async () => {
    // 700 entries that have waited 10 s (ids in the past), added at once: the bridge's next read
    // returns the first 500 (its batch), the one after the last 200. BullMQ adds such `added`
    // entries for every job; the bridge reads past them without writing anything.
    const since = Date.now() - 10_000;
    const adding = client.multi();
    for (let i = 0; i < 700; i++)
      adding.xadd(keys.bullEvents('reports'), `${since}-${i}`, 'event', 'added', 'jobId', `job-${i}`, 'name', 'report');
    await adding.exec();

    const behind = await pollUntil(
      async () => bridge.status()[0],
      (status) => status.entriesRead >= 500 && status.lagEntries > 0,
      10_000,
      5,
    );
    expect(behind).toMatchObject({ leading: true, entriesRead: 500, lagEntries: 200, position: `${since}-499` });
    expect(behind.lagMs).toBeGreaterThanOrEqual(10_000);

    // The next read (after the pause) reaches the head: nothing is left.
    const caughtUp = await pollUntil(
      async () => bridge.status()[0],
      (status) => status.entriesRead === 700 && status.lagEntries === 0,
      10_000,
      5,
    );
    expect(caughtUp).toMatchObject({ entriesRead: 700, lagEntries: 0, lagMs: 0, position: `${since}-699` });
  });
});
