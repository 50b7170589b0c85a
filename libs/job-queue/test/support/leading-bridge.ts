import type { Redis } from 'ioredis';
import { JobScripts } from '../../src/backends/bullmq/job-scripts.js';
import type { RedisKeys } from '../../src/backends/bullmq/redis-keys.js';
import { QueueEventsBridge, type QueueEventsBridgeOptions } from '../../src/backends/bullmq/foreign-workers/queue-events-bridge.js';
import { pollUntil } from '../../../../test/support/poll-until.js';

/**
 * A foreign-worker bridge of the queue `reports` on `client` (keys under `keys`), with the pause
 * between reads a test gives it; resolves once it holds the queue's lease and reads its stream.
 */
export async function startLeadingBridge(
  client: Redis,
  keys: RedisKeys,
  busyPause: QueueEventsBridgeOptions['busyPause'],
): Promise<QueueEventsBridge> {
  const bridge = new QueueEventsBridge({
    scripts: new JobScripts(client),
    keys,
    commands: client,
    queues: () => ['reports'],
    retentionMs: 60_000,
    maxEventsPerJob: 10_000,
    maxEventBytes: 64 * 1024,
    busyPause,
  });
  bridge.start();
  await pollUntil(
    async () => bridge.status()[0].leading,
    (leading) => leading,
  );
  return bridge;
}
