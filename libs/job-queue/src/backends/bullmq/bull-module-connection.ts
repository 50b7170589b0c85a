import { DEFAULT_FAILOVER_TIMEOUT_MS } from '../../options/failover-timeout.js';

/** Connection options for `BullModule.forRoot` / `forRootAsync` (BullMQ's `ConnectionOptions` for a URL). */
export interface BullModuleConnection {
  url: string;
  /** BullMQ requires it for workers' blocking connections. */
  maxRetriesPerRequest: null;
}

/**
 * Checks that Redis at `url` answers (database index included) and returns the connection options
 * for `@nestjs/bullmq`'s `BullModule.forRootAsync`, so one `REDIS_URL` configures both modules.
 * Call it in that module's factory: a process that cannot reach Redis then stops at once with the
 * URL redacted, before BullMQ opens connections of its own, which would crash the process on a bad
 * database index and print a wrong password in ioredis' unhandled-error output.
 *
 * @throws JobQueueUnavailableError, InvalidJobQueueOptionsError (never quoting the password).
 * @publicApi
 */
export async function bullModuleConnection(url: string): Promise<BullModuleConnection> {
  // Loaded here so that an application on the memory backend never loads the Redis client.
  const { connectRedis } = await import('./redis-connection.js');
  const probe = await connectRedis(url, 'connection-check');
  probe.disconnect();
  return { url, maxRetriesPerRequest: null };
}

/**
 * The Redis Cluster counterpart of {@link bullModuleConnection}: checks that the cluster at
 * `nodes` (some of its nodes' `redis://` URLs, as `REDIS_CLUSTER_NODES` lists them) answers, and
 * returns an ioredis `Cluster` for `BullModule.forRoot`'s `connection` (BullMQ makes its blocking
 * connections from it, with the same settings). The key prefix must then carry a hash tag, e.g.
 * `{jq}`. The application owns the returned client: `disconnect()` it at shutdown if the process
 * does not simply exit.
 *
 * Its commands wait through the failover of a master for `options.failoverTimeoutMs` (default
 * 20000 ms; give it `redis.failoverTimeoutMs`, `REDIS_FAILOVER_TIMEOUT_MS`): a processor's
 * `job.updateProgress`, `job.log` and its job's completion wait for the promoted replica instead of
 * failing the job (see {@link clusterFailoverOptions}).
 *
 * @throws JobQueueUnavailableError when no node answers (never quoting a password),
 *   InvalidJobQueueOptionsError when `failoverTimeoutMs` is not an integer from 1000 to 600000.
 * @publicApi
 */
export async function bullModuleClusterConnection(
  nodes: readonly string[],
  options: { failoverTimeoutMs?: number } = {},
): Promise<import('ioredis').Cluster> {
  const { connectCluster } = await import('./redis-connection.js');
  const failoverTimeoutMs = options.failoverTimeoutMs ?? DEFAULT_FAILOVER_TIMEOUT_MS;
  return connectCluster(nodes, { connectionName: 'bullmq', maxRetriesPerRequest: null, failoverTimeoutMs });
}
