import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { sleep } from './clock.js';
import { BenchRedis, freePort } from './redis-server.js';

const run = promisify(execFile);

/** Redis Cluster's bus port of a node is its port plus this. */
const BUS_PORT_OFFSET = 10_000;

/** True when nothing listens on `port` of 127.0.0.1 right now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free port whose cluster bus port is free too, and neither among `taken`. */
async function freeNodePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await freePort();
    const bus = port + BUS_PORT_OFFSET;
    if (bus > 65_535 || taken.has(port) || taken.has(bus)) continue;
    if (await isFree(bus)) return port;
  }
}

/**
 * A local Redis Cluster for the benchmark: three masters, each with one replica
 * (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create ... --cluster-replicas 1`),
 * on free loopback ports, without persistence. Ready once every node serves all slots and every
 * master's replica is in sync (so that `WAIT 1` is answered from the first write on).
 */
export class BenchCluster {
  private constructor(private readonly nodes: BenchRedis[]) {}

  /** `redis://127.0.0.1:<port>` of every node, masters and replicas. */
  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  static async start(): Promise<BenchCluster> {
    const taken = new Set<number>();
    const ports: number[] = [];
    for (let i = 0; i < 6; i++) {
      const port = await freeNodePort(taken);
      taken.add(port).add(port + BUS_PORT_OFFSET);
      ports.push(port);
    }
    const nodes: BenchRedis[] = [];
    const cluster = new BenchCluster(nodes);
    try {
      // A node timeout well above the pauses of a loaded 2-core machine: no failover mid-run. A
      // replica's first sync starts at once (Redis 7 waits 5 s for more replicas by default).
      const args = (port: number): string[] => [
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '10000'],
        ...['--repl-diskless-sync-delay', '0'],
      ];
      nodes.push(...(await Promise.all(ports.map((port) => BenchRedis.start({ port, args: args(port) })))));
      const addresses = ports.map((port) => `127.0.0.1:${port}`);
      await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '1', '--cluster-yes'], { timeout: 60_000 });
      await cluster.waitUntilReady(30_000);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }

  /** Waits until every node serves all 16384 slots and each of the three masters has an online replica. */
  private async waitUntilReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all(this.nodes.map((node) => nodeState(node.port)));
      const healthy = states.every((state) => state.slotsOk);
      const syncedMasters = states.filter((state) => state.master && state.onlineReplicas >= 1).length;
      if (healthy && syncedMasters === 3) return;
      if (Date.now() > deadline) {
        throw new Error(`Redis Cluster not ready in ${timeoutMs} ms: ${JSON.stringify(states)}`);
      }
      await sleep(100);
    }
  }
}

/** What one node says of the cluster and of its replicas. */
async function nodeState(port: number): Promise<{ port: number; slotsOk: boolean; master: boolean; onlineReplicas: number }> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const cluster = (await client.cluster('INFO')) as string;
    const replication = await client.info('replication');
    return {
      port,
      slotsOk: /cluster_state:ok/.test(cluster) && /cluster_slots_ok:16384/.test(cluster),
      master: /role:master/.test(replication),
      onlineReplicas: (replication.match(/^slave\d+:.*state=online/gm) ?? []).length,
    };
  } catch {
    return { port, slotsOk: false, master: false, onlineReplicas: 0 };
  } finally {
    client.disconnect();
  }
}
