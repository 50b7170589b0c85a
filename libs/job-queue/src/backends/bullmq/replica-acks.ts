import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';
import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';
import type { RedisClient } from './redis-connection.js';

/**
 * Waits until replicas have this process's writes (`WAIT <replicas> <timeout>`), so that a write
 * of an event counts as done only once it would survive its master's failover. `WAIT` covers
 * every earlier write of the connection it is sent on, so it goes to the very connection (on Redis
 * Cluster: the cluster's connection to the node of the key written) and one `WAIT` serves every
 * write whose reply came back before it was sent.
 */
export class ReplicaAcks {
  /** The `WAIT` each node connection will send next, shared by the writes made until then. */
  private readonly next = new Map<Redis | Cluster, Promise<void>>();
  /** Times each node connection (re)connected: a `WAIT` measures only its own connection's writes. */
  private readonly connects = new WeakMap<Redis | Cluster, { count: number }>();

  constructor(
    private readonly client: RedisClient,
    private readonly replicas: number,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Resolves once `replicas` replicas have every write made so far on the connection to the node
   * of `key`; rejects with `JobQueueUnavailableError` when fewer confirm it within the timeout
   * (the write is on the master: a caller that retries finds it done, or makes it again after a
   * failover lost it).
   */
  after(key: string): Promise<void> {
    const node = this.nodeOf(key);
    const connects = this.connectsOf(node);
    const writtenOn = connects.count;
    let wait = this.next.get(node);
    if (!wait) {
      wait = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        this.next.delete(node);
        const acked = Number(await node.wait(this.replicas, this.timeoutMs));
        // A connection that reconnected meanwhile (ioredis resends unanswered commands) has no
        // writes of its own yet: its WAIT would vouch for nothing.
        if (connects.count !== writtenOn) {
          throw new JobQueueUnavailableError('The Redis connection reconnected before its replicas confirmed a write');
        }
        if (acked < this.replicas) {
          throw new JobQueueUnavailableError(
            `Only ${acked} of ${this.replicas} Redis replica(s) confirmed a write within ${this.timeoutMs} ms`,
          );
        }
      });
      this.next.set(node, wait);
    }
    return wait;
  }

  private connectsOf(node: Redis | Cluster): { count: number } {
    let connects = this.connects.get(node);
    if (!connects) {
      const counter = { count: 0 };
      node.on('connect', () => counter.count++);
      this.connects.set(node, counter);
      connects = counter;
    }
    return connects;
  }

  /** The connection the write of `key` went out on. */
  private nodeOf(key: string): Redis | Cluster {
    if (!(this.client instanceof Cluster)) return this.client;
    const address = this.client.slots[calculateSlot(key)]?.[0];
    const node = this.client.nodes('master').find((candidate) => `${candidate.options.host}:${candidate.options.port}` === address);
    if (!node) throw new JobQueueUnavailableError(`Redis Cluster has no known master for key slot ${calculateSlot(key)} right now`);
    return node;
  }
}
