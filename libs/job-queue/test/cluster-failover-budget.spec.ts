import type { Cluster } from 'ioredis';
import { bullModuleClusterConnection, validateJobQueueOptions } from 'nestjs-job-streams';
import { RedisConnections } from '../src/backends/bullmq/redis-connections.js';
import { RedisCluster } from '../../../test/support/redis-cluster.js';

/**
 * How long a command waits while the master of its slot is gone. The master and its replica are
 * both SIGKILLed, so that no promotion ends the outage before the test does: the connection that
 * serves requests gives up within ioredis' own redirection budget (the api answers 503), a
 * worker's connection only after its `failoverTimeoutMs`, and a `bullModuleClusterConnection`
 * (20 s by default) waits until the master is back and then succeeds.
 */

const FAILOVER_TIMEOUT_MS = 3000;

interface Outcome {
  ok: boolean;
  afterMs: number;
  message?: string;
}

describe('Redis Cluster: commands while the master of their slot is gone', () => {
  let cluster: RedisCluster | undefined;
  let connections: RedisConnections | undefined;
  let bullmq: Cluster | undefined;

  beforeAll(async () => {
    cluster = await RedisCluster.start({ nodeTimeoutMs: 1000 });
  }, 60_000);

  afterAll(async () => {
    connections?.close();
    bullmq?.disconnect();
    await cluster?.destroy();
  });

  it('the request connection fails fast, the worker connection after failoverTimeoutMs, a BullModule connection waits until the master is back', async () => {
    const prefix = '{budget}';
    const options = validateJobQueueOptions({
      backend: 'bullmq',
      redis: { clusterNodes: cluster!.urls, prefix, failoverTimeoutMs: FAILOVER_TIMEOUT_MS },
    });
    connections = await RedisConnections.open(options);
    bullmq = await bullModuleClusterConnection(cluster!.urls);
    const worker = connections.forWorker();
    const key = `${prefix}:probe`;
    // Each client knows the slot's master and is connected to it.
    for (const client of [connections.commands, worker, bullmq]) expect(await client.set(key, 'before')).toBe('OK');

    const victim = (await cluster!.masterOf(key)).port;
    const replica = await cluster!.replicaOf(victim);
    await Promise.all([cluster!.kill(victim), cluster!.kill(replica)]);
    const killedAt = Date.now();
    const outcome = (command: Promise<unknown>): Promise<Outcome> =>
      command.then(
        () => ({ ok: true, afterMs: Date.now() - killedAt }),
        (error: Error) => ({ ok: false, afterMs: Date.now() - killedAt, message: error.message }),
      );
    let bullmqSettled = false;
    const onBullmq = outcome(bullmq.set(key, 'bullmq')).finally(() => (bullmqSettled = true));
    const onWorker = outcome(worker.set(key, 'worker'));
    const onCommands = await outcome(connections.commands.set(key, 'commands'));

    expect(onCommands).toMatchObject({ ok: false });
    expect(onCommands.afterMs).toBeLessThan(FAILOVER_TIMEOUT_MS);
    const workerOutcome = await onWorker;
    expect(workerOutcome).toMatchObject({ ok: false, message: expect.stringContaining('Too many Cluster redirections') });
    expect(workerOutcome.afterMs).toBeGreaterThanOrEqual(FAILOVER_TIMEOUT_MS);
    // Bounded: about twice the budget where each try costs one redirection (7.5 s measured); the
    // bound leaves room for a busy machine's late timers.
    expect(workerOutcome.afterMs).toBeLessThan(5 * FAILOVER_TIMEOUT_MS);
    expect(bullmqSettled).toBe(false);

    await Promise.all([cluster!.restart(victim), cluster!.restart(replica)]);
    expect(await onBullmq).toMatchObject({ ok: true });
    expect(await bullmq.get(key)).toBe('bullmq');
  }, 60_000);
});
