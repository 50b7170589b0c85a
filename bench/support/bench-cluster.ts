import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { sleep } from './clock.js';
import { ClusterNetwork } from './cluster-network.js';
import { BUS_PORT_OFFSET, freeNodePort, parseClusterNodes, type ClusterNodeView } from './cluster-nodes.js';
import { BenchRedis } from './redis-server.js';

const run = promisify(execFile);

export interface BenchClusterOptions {
  /**
   * `cluster-node-timeout` (default 10 s): how long a node may not answer before the others take
   * it for failed, and a replica of a failed master gets itself promoted.
   */
  nodeTimeoutMs?: number;
  /**
   * Each node on its own loopback address (127.0.1.x) behind a {@link ClusterNetwork}, so that
   * {@link BenchCluster.isolate} can cut one off from the others. Every byte of the cluster then
   * goes through this process: for measuring what a failure does, not speed.
   */
  partitionable?: boolean;
}

/**
 * A local Redis Cluster for the benchmark: three masters, each with one replica
 * (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create ... --cluster-replicas 1`),
 * on free loopback ports, without persistence. Ready once every node serves all slots and every
 * master's replica is in sync (so that `WAIT 1` is answered from the first write on). A node can
 * be SIGKILLed and started again ({@link kill}, {@link restart}) or, when partitionable, cut off
 * from the other nodes ({@link isolate}, {@link heal}), to make its replica take over.
 */
export class BenchCluster {
  private network?: ClusterNetwork;

  private constructor(private readonly nodes: BenchRedis[]) {}

  /** `redis://127.0.0.1:<port>` of every node, masters and replicas. */
  get urls(): string[] {
    return this.nodes.map((node) => `redis://127.0.0.1:${node.port}`);
  }

  static async start(options: BenchClusterOptions = {}): Promise<BenchCluster> {
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
      // By default a node timeout well above the pauses of a loaded 2-core machine: no failover
      // mid-run. A replica's first sync starts at once (Redis 7 waits 5 s for more replicas by default).
      const nodeTimeout = String(options.nodeTimeoutMs ?? 10_000);
      const args = (port: number, host: string): string[] => [
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', nodeTimeout],
        ...['--repl-diskless-sync-delay', '0'],
        // Behind the network: connect from its own address (which tells the network who it is), announce the network's.
        ...(options.partitionable ? ['--bind-source-addr', host, '--cluster-announce-ip', '127.0.0.1'] : []),
      ];
      const placed = ports.map((port, index) => ({ port, host: options.partitionable ? `127.0.1.${index + 1}` : '127.0.0.1' }));
      if (options.partitionable) cluster.network = await ClusterNetwork.start(placed, BUS_PORT_OFFSET);
      nodes.push(...(await Promise.all(placed.map(({ port, host }) => BenchRedis.start({ host, port, args: args(port, host) })))));
      const addresses = ports.map((port) => `127.0.0.1:${port}`);
      await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '1', '--cluster-yes'], { timeout: 60_000 });
      await cluster.waitUntilReady();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    await this.network?.stop();
  }

  /** `CLUSTER NODES` as a running node sees it (not the one on `notFrom`: e.g. one cut off, whose view is its own). */
  async describe(notFrom?: number): Promise<ClusterNodeView[]> {
    return withNode(this.aliveNode(notFrom).port, async (client) => {
      return parseClusterNodes((await client.cluster('NODES')) as string);
    });
  }

  /** The port of the master that serves `key` right now (by `CLUSTER KEYSLOT` and `CLUSTER NODES`). */
  async masterOf(key: string): Promise<number> {
    const slot = await withNode(this.aliveNode().port, async (client) => Number(await client.cluster('KEYSLOT', key)));
    const master = (await this.describe()).find(
      (node) =>
        node.role === 'master' &&
        !node.failed &&
        node.slots.some((range) => {
          const [from, to = from] = range.split('-').map(Number);
          return slot >= from && slot <= to;
        }),
    );
    if (!master) throw new Error(`no master serves slot ${slot} of ${key}`);
    return master.port;
  }

  /** SIGKILLs the node on `port`. */
  async kill(port: number): Promise<void> {
    await this.node(port).kill();
  }

  /** Starts the node on `port` again (after {@link kill}): it rejoins the cluster, as a replica once another took over. */
  async restart(port: number): Promise<void> {
    await this.node(port).restart();
  }

  /** Cuts the node on `port` off from the other nodes; clients still reach it (see {@link ClusterNetwork}). */
  isolate(port: number): void {
    this.partitionedNetwork().isolate(port);
  }

  /** Ends {@link isolate}'s cut: the node rejoins the cluster, as a replica once another took over. */
  heal(): void {
    this.partitionedNetwork().heal();
  }

  /**
   * After {@link kill} or {@link isolate} of the master on `port`: waits until the other nodes flag
   * it failed, three other masters serve the slots, and every other running node has all of them
   * served again.
   */
  async waitForFailover(port: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nodes = await this.describe(port);
      const dead = nodes.find((node) => node.port === port);
      const serving = nodes.filter((node) => node.role === 'master' && !node.failed && node.slots.length);
      if (dead?.failed && serving.length === 3 && !serving.some((node) => node.port === port)) {
        const others = this.nodes.filter((node) => node.running && node.port !== port);
        const states = await Promise.all(others.map((node) => nodeState(node.port)));
        if (states.every((state) => state.slotsOk)) return;
      }
      if (Date.now() > deadline) throw new Error(`no replica took over from the master on port ${port} in ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** Waits until every node serves all 16384 slots and each of the three masters has an online replica. */
  async waitUntilReady(timeoutMs = 30_000): Promise<void> {
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

  private node(port: number): BenchRedis {
    const node = this.nodes.find((candidate) => candidate.port === port);
    if (!node) throw new Error(`no node of the cluster on port ${port}`);
    return node;
  }

  private aliveNode(notOn?: number): BenchRedis {
    const node = this.nodes.find((candidate) => candidate.running && candidate.port !== notOn);
    if (!node) throw new Error('no node of the cluster runs');
    return node;
  }

  private partitionedNetwork(): ClusterNetwork {
    if (!this.network) throw new Error('this cluster was not started partitionable');
    return this.network;
  }
}

/** Runs `use` with a fresh client of the node on `port`, disconnected afterwards. */
async function withNode<T>(port: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/** What one node says of the cluster and of its replicas. */
async function nodeState(port: number): Promise<{ port: number; slotsOk: boolean; master: boolean; onlineReplicas: number }> {
  try {
    return await withNode(port, async (client) => {
      const cluster = (await client.cluster('INFO')) as string;
      const replication = await client.info('replication');
      return {
        port,
        slotsOk: /cluster_state:ok/.test(cluster) && /cluster_slots_ok:16384/.test(cluster),
        master: /role:master/.test(replication),
        onlineReplicas: (replication.match(/^slave\d+:.*state=online/gm) ?? []).length,
      };
    });
  } catch {
    return { port, slotsOk: false, master: false, onlineReplicas: 0 };
  }
}
