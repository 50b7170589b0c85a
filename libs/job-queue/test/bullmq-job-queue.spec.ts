import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { describeJobQueueContract, nestContractHarness } from './contract/job-queue.contract.js';
import { RedisServer } from '../../../test/support/redis-server.js';

let redis: RedisServer | undefined;

describeJobQueueContract(
  'bullmq',
  nestContractHarness(
    () => {
      if (!redis) throw new Error('redis-server did not start');
      // A fresh prefix per application keeps tests apart on one server.
      return { backend: 'bullmq', redis: { url: redis.url, prefix: `c${randomUUID().slice(0, 8)}` }, shutdownGraceMs: 200 };
    },
    {
      setup: async () => {
        redis = await RedisServer.start();
      },
      teardown: async () => {
        await redis?.destroy();
      },
    },
  ),
);
