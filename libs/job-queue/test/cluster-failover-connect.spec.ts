import { Redis, type Cluster } from 'ioredis';
import { redisClusterClient } from '../src/backends/bullmq/redis-connection.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisCluster } from '../../../test/support/redis-cluster.js';

/**
 * Connecting while the cluster reports itself down, as BullMQ's watchdog does when it reconnects
 * a Worker's blocking connection in the middle of a failover (`await client.connect()`). ioredis'
 * ready check on a cluster loses that promise when CLUSTER INFO says `cluster_state:fail`: the
 * client later becomes ready, but the caller waits for ever, and such a worker took no job again.
 */
describe('Redis Cluster: a connect while a master fails over', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await RedisCluster.start();
  }, 60_000);
  afterAll(async () => {
    await cluster?.destroy();
  });

  it('settles once the cluster has the slots, and serves once it is whole again, instead of never returning', async () => {
    // Masters that serve slots (a replica may still be listed as a master without any, early on).
    const masters = (await cluster.describe()).filter((node) => node.role === 'master' && !node.failed && node.slots.length > 0);
    const [victim, witness] = masters.map((node) => node.port);
    const observer = new Redis(witness, '127.0.0.1');
    let client: Cluster | undefined;
    try {
      // The master and its replica both go: the cluster reports itself down until they come back,
      // a window as long as the test wants instead of the moments before a promotion.
      // Its replica, as the master itself knows it (ROLE lists the replicas connected to it).
      const victimNode = new Redis(victim, '127.0.0.1');
      const role = await pollUntil(
        () => victimNode.call('ROLE') as Promise<[string, number, Array<[string, string, string]>]>,
        ([, , replicas]) => replicas.length > 0,
      );
      victimNode.disconnect();
      const replica = Number(role[2][0][1]);
      await Promise.all([cluster.kill(victim), cluster.kill(replica)]);
      const info = await pollUntil(
        () => observer.cluster('INFO') as Promise<string>,
        (text) => text.includes('cluster_state:fail'),
      );
      expect(info).toContain('cluster_state:fail');
      // What BullMQ's watchdog does to a Worker's blocking connection: `await client.connect()`.
      client = redisClusterClient(cluster.urls, { connectionName: 'failover-connect' });
      client.on('error', () => undefined);
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<'never settled'>((resolve) => (timer = setTimeout(() => resolve('never settled'), 10_000)));
      const outcome = await Promise.race([client.connect().then(() => 'connected' as const), gaveUp]);
      clearTimeout(timer);
      expect(outcome).toBe('connected');
      await Promise.all([cluster.restart(victim), cluster.restart(replica)]);
      await cluster.waitUntilHealthy();
      // Every slot is served again.
      for (const tag of ['a', 'b', 'c', 'd', 'e', 'f']) expect(await client.set(`{${tag}}:k`, tag)).toBe('OK');
    } finally {
      client?.disconnect();
      observer.disconnect();
    }
  }, 90_000);
});
