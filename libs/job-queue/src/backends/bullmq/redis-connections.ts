import { Logger } from '@nestjs/common';
import type { JobQueueMeter } from '../../metrics/job-queue-meter.js';
import type { ResolvedJobQueueOptions } from '../../options/job-queue-module-options.js';
import { connectCluster, connectRedis, duplicateClient, type ConnectionTuning, type RedisClient } from './redis-connection.js';

/**
 * The Redis clients of one process, opened at start and closed at shutdown. Their number does
 * not depend on how many jobs run or how many clients follow them.
 */
export class RedisConnections {
  private readonly logger = new Logger('JobQueue');
  /** BullMQ's worker commands (BullMQ adds its own blocking connection), opened by {@link forWorker}. */
  private worker?: RedisClient;

  private constructor(
    private readonly prefix: string,
    /** Redis Cluster: how long the worker connection's commands wait through a failover. */
    private readonly failoverTimeoutMs: number,
    /**
     * Commands and scripts; fails fast while Redis is down, and on Redis Cluster within ioredis'
     * own redirection budget during a failover (requests get 503, never hang).
     */
    readonly commands: RedisClient,
    /** The shared blocking `XREAD` of the event stream reader. */
    readonly blocking: RedisClient,
    /** Cancel messages, on worker processes. */
    readonly subscriber: RedisClient | undefined,
    private readonly meter: JobQueueMeter | undefined,
    /** True on Redis Cluster. */
    readonly cluster: boolean,
  ) {
    this.watch(commands, 'commands');
    this.watch(blocking, 'reader');
    if (subscriber) this.watch(subscriber, 'cancels');
  }

  /** Logs a client's errors (at most every 5 s) and reports errors and reconnects to the meter. */
  private watch(client: RedisClient, connection: string): void {
    client.on('error', this.errorLogger());
    client.on('error', () => this.meter?.sink?.redisError(connection));
    client.on('reconnecting', () => this.meter?.sink?.redisReconnect(connection));
  }

  /**
   * Connects every client the process needs, or throws a `JobQueueUnavailableError` that names
   * the (redacted) URL: a process that cannot reach Redis at start should not start.
   */
  static async open(options: ResolvedJobQueueOptions, meter?: JobQueueMeter): Promise<RedisConnections> {
    const { url, prefix, clusterNodes, failoverTimeoutMs } = options.redis;
    const connect = (tuning: ConnectionTuning): Promise<RedisClient> =>
      clusterNodes ? connectCluster(clusterNodes, tuning) : connectRedis(url, tuning.connectionName, tuning);
    const opened: RedisClient[] = [];
    try {
      const commands = await connect({
        connectionName: `${prefix}:commands`,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: 10_000,
      });
      opened.push(commands);
      const blocking = await connect({ connectionName: `${prefix}:reader`, maxRetriesPerRequest: null });
      opened.push(blocking);
      const subscriber = options.worker ? await connect({ connectionName: `${prefix}:cancels`, maxRetriesPerRequest: null }) : undefined;
      if (subscriber) opened.push(subscriber);
      return new RedisConnections(prefix, failoverTimeoutMs, commands, blocking, subscriber, meter, clusterNodes !== undefined);
    } catch (error) {
      for (const client of opened) client.disconnect();
      throw error;
    }
  }

  /**
   * A connection for one more blocking read of the event reader (on Redis Cluster each slot group
   * of followed jobs has its own), closed by the reader.
   */
  forReader(): RedisClient {
    const reader = duplicateClient(this.commands, { connectionName: `${this.prefix}:reader`, maxRetriesPerRequest: null });
    this.watch(reader, 'reader');
    return reader;
  }

  /**
   * A connection for a BullMQ `Worker`: it waits through Redis outages instead of failing fast,
   * and on Redis Cluster through a master's failover (`redis.failoverTimeoutMs`). BullMQ does not
   * close a connection it was given; it is closed with the others.
   */
  forWorker(): RedisClient {
    if (!this.worker) {
      this.worker = duplicateClient(this.commands, {
        connectionName: `${this.prefix}:worker`,
        enableOfflineQueue: true,
        maxRetriesPerRequest: null,
        commandTimeout: undefined,
        failoverTimeoutMs: this.failoverTimeoutMs,
      });
      this.watch(this.worker, 'worker');
    }
    return this.worker;
  }

  /** Each client's ioredis status, by role. */
  status(): Record<string, string> {
    const status: Record<string, string> = { commands: this.commands.status, reader: this.blocking.status };
    if (this.subscriber) status.cancels = this.subscriber.status;
    if (this.worker) status.worker = this.worker.status;
    return status;
  }

  close(): void {
    for (const client of [this.commands, this.blocking, this.subscriber, this.worker]) client?.disconnect();
  }

  /** Logs connection errors at most every 5 s per client (a Redis outage must not flood the log). */
  private errorLogger(): (error: Error) => void {
    let last = 0;
    return (error) => {
      if (Date.now() - last < 5000) return;
      last = Date.now();
      this.logger.warn(`Redis connection: ${error.message}`);
    };
  }
}
