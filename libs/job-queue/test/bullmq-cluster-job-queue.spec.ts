import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { describeJobQueueContract, nestContractHarness } from './contract/job-queue.contract.js';
import { closeTestClusterConnections } from './contract/job-kinds.js';
import { RedisCluster } from '../../../test/support/redis-cluster.js';

let cluster: RedisCluster | undefined;

// The whole contract on a real Redis Cluster of three masters and three replicas: every script
// and multi-key command must touch one slot, and followers are read per slot group.
describeJobQueueContract(
  'bullmq on Redis Cluster',
  nestContractHarness(
    () => {
      if (!cluster) throw new Error('the Redis Cluster did not start');
      // A fresh prefix per application keeps tests apart; BullMQ needs it to carry a hash tag.
      return {
        backend: 'bullmq',
        redis: { clusterNodes: cluster.urls.slice(0, 2), prefix: `{c${randomUUID().slice(0, 8)}}` },
        shutdownGraceMs: 200,
      };
    },
    {
      setup: async () => {
        cluster = await RedisCluster.start();
      },
      teardown: async () => {
        closeTestClusterConnections();
        await cluster?.destroy();
      },
    },
  ),
);
