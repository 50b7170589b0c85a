import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';
import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';
import type { RedisClient } from './redis-connection.js';

/** How long a beacon key (see {@link ReplicaAcks.afterWriteElsewhere}) outlives its last write. */
const BEACON_TTL_MS = 60_000;

/**
 * Waits until replicas have this process's writes (`WAIT <replicas> <timeout>`), so that a write
 * of an event counts as done only once it would survive its master's failover. `WAIT` covers
 * every earlier write of the connection it is sent on, so it goes to the very connection (on Redis
 * Cluster: the cluster's connection to the node of the key written) and one `WAIT` serves every
 * write whose reply came back before it was sent.
 */
export class ReplicaAcks {
  /**
   * The `WAIT` each node connection will send next, shared by the writes made until then, and the
   * beacon it writes first when one of those writes was made on another connection.
   */
  private readonly next = new Map<Redis | Cluster, { wait: Promise<void>; beacon?: string }>();
  /** Times each node connection (re)connected: a `WAIT` measures only its own connection's writes. */
  private readonly connects = new WeakMap<Redis | Cluster, { count: number }>();

  constructor(
    private readonly client: RedisClient,
    private readonly replicas: number,
    private readonly timeoutMs: number,
    /** A key of this library's in the slot of `key`, written by {@link afterWriteElsewhere}. */
    private readonly beaconOf: (key: string) => string,
  ) {}

  /**
   * Resolves once `replicas` replicas have every write made so far on the connection to the node
   * of `key`; rejects with `JobQueueUnavailableError` when fewer confirm it within the timeout
   * (the write is on the master: a caller that retries finds it done, or makes it again after a
   * failover lost it).
   */
  after(key: string): Promise<void> {
    return this.batchOf(this.nodeOf(key)).wait;
  }

  /**
   * {@link after} for a write of `key` that another connection made and that was answered (the
   * module's part of a BullMQ command composed with it, sent on BullMQ's connection): `WAIT`
   * counts only its own connection's writes, so this one first writes a beacon key in the slot of
   * `key` (on the same master). Replication keeps the master's order: a replica that has the
   * beacon has the earlier write. BullMQ's connection never waits for replicas (its lock renewals
   * and moves would wait with it).
   */
  afterWriteElsewhere(key: string): Promise<void> {
    const batch = this.batchOf(this.nodeOf(key));
    batch.beacon = this.beaconOf(key);
    return batch.wait;
  }

  /** The next `WAIT` of `node`, made on first use. */
  private batchOf(node: Redis | Cluster): { wait: Promise<void>; beacon?: string } {
    const connects = this.connectsOf(node);
    const writtenOn = connects.count;
    let batch = this.next.get(node);
    if (!batch) {
      const made: { wait: Promise<void>; beacon?: string } = { wait: Promise.resolve() };
      made.wait = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        this.next.delete(node);
        if (made.beacon) await node.set(made.beacon, '1', 'PX', BEACON_TTL_MS);
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
      batch = made;
      this.next.set(node, batch);
    }
    return batch;
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
