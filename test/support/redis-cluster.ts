import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { BUS_PORT_OFFSET, freeNodePort, parseClusterNodes, type ClusterNodeView } from '../../bench/support/cluster-nodes.js';
import { waitForLine } from './wait-for-line.js';

const run = promisify(execFile);

/** One `redis-server --cluster-enabled yes` of a {@link RedisCluster}. */
class ClusterNode {
  child?: ChildProcess;

  constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly nodeTimeoutMs: number,
  ) {}

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'no'];
    const timeout = String(this.nodeTimeoutMs);
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${this.port}.conf`, '--cluster-node-timeout', timeout);
    // A replica's first sync starts at once (Redis 7 waits 5 s for more replicas by default).
    args.push('--repl-diskless-sync-delay', '0');
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    await waitForLine(child, /Ready to accept connections/, 15_000, `redis-server :${this.port}`);
  }

  /** SIGKILL: the node dies as a crashed machine would, without a word to the cluster. */
  kill(): Promise<void> {
    return this.end('SIGKILL');
  }

  stop(): Promise<void> {
    return this.end('SIGTERM');
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    this.child = undefined;
  }
}

/**
 * A real Redis Cluster on loopback for one test file: three masters and three replicas
 * (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create ... --cluster-replicas 1`),
 * on free ports. Fails, never skips, when `redis-server` or `redis-cli` is missing.
 */
export class RedisCluster {
  private constructor(
    private readonly nodes: ClusterNode[],
    private readonly dir: string,
  ) {}

  /**
   * `nodeTimeoutMs` is each node's `cluster-node-timeout` (default 2000): how long a master may not
   * answer before the others count it failed and its replica is promoted.
   */
  static async start(options: { nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'jq-cluster-'));
    const taken = new Set<number>();
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < 6; i++) {
      const port = await freeNodePort(taken);
      taken.add(port).add(port + BUS_PORT_OFFSET);
      nodes.push(new ClusterNode(port, dir, options.nodeTimeoutMs ?? 2000));
    }
    const cluster = new RedisCluster(nodes, dir);
    try {
      await Promise.all(nodes.map((node) => node.start()));
      const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
      await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '1', '--cluster-yes'], { timeout: 60_000 });
      await cluster.waitUntilHealthy();
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  /** `redis://127.0.0.1:<port>` of every node, masters and replicas. */
  get urls(): string[] {
    return this.nodes.map((node) => `redis://127.0.0.1:${node.port}`);
  }

  /** `CLUSTER NODES` as seen from a node still running. */
  async describe(): Promise<ClusterNodeView[]> {
    const alive = this.nodes.find((node) => node.child);
    if (!alive) throw new Error('no node of the cluster runs');
    const client = new Redis(alive.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      return parseClusterNodes((await client.cluster('NODES')) as string);
    } finally {
      client.disconnect();
    }
  }

  /** The master serving the hash slot of `key` right now, by `CLUSTER NODES`. */
  async masterOf(key: string): Promise<ClusterNodeView> {
    const slot = calculateSlot(key);
    const master = (await this.describe()).find(
      (node) =>
        node.role === 'master' &&
        !node.failed &&
        node.slots.some((range) => {
          const [from, to = from] = range.split('-').map(Number);
          return slot >= from && slot <= to;
        }),
    );
    if (!master) throw new Error(`no master serves slot ${slot} (key ${key})`);
    return master;
  }

  /** The port of the replica of the master on `port`, as the master knows it (`ROLE`). */
  async replicaOf(port: number): Promise<number> {
    const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      const [, , replicas] = (await client.call('ROLE')) as [string, number, Array<[string, string, string]>];
      if (!replicas.length) throw new Error(`the master on port ${port} has no replica`);
      return Number(replicas[0][1]);
    } finally {
      client.disconnect();
    }
  }

  /** SIGKILLs the node on `port`. */
  async kill(port: number): Promise<void> {
    await this.nodes.find((node) => node.port === port)?.kill();
  }

  /** Starts the node on `port` again (after {@link kill}): it rejoins the cluster, as a replica once another took over. */
  async restart(port: number): Promise<void> {
    await this.nodes.find((node) => node.port === port)?.start();
  }

  /**
   * Waits until every running node reports `cluster_state:ok` with all 16384 slots served, and
   * (unless `replicated` is false) every master has its replica online (synced).
   */
  async waitUntilHealthy(timeoutMs = 30_000, replicated = true): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all(
        this.nodes
          .filter((node) => node.child)
          .map(async (node) => {
            const client = new Redis(node.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
            try {
              await client.connect();
              const info = (await client.cluster('INFO')) as string;
              if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info)) return false;
              const replication = await client.info('replication');
              return !replicated || !/role:master/.test(replication) || /slave0:.*state=online/.test(replication);
            } catch {
              return false;
            } finally {
              client.disconnect();
            }
          }),
      );
      if (states.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error('Redis Cluster did not become healthy in time');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * After {@link kill} of a master: waits until the others mark it failed and its replica serves
   * its slots (a promoted master has no replica of its own then).
   */
  async waitForFailover(port: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nodes = await this.describe();
      const dead = nodes.find((node) => node.port === port);
      const servedBy = nodes.filter((node) => node.role === 'master' && !node.failed && node.slots.length);
      if (dead?.failed && servedBy.length === 3 && !servedBy.some((node) => node.port === port)) break;
      if (Date.now() > deadline) throw new Error(`no replica took over from the master on port ${port} in time`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await this.waitUntilHealthy(Math.max(1000, deadline - Date.now()), false);
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
