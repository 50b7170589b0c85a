import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { InvalidJobQueueOptionsError } from '../../errors/invalid-options.error.js';
import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';

/** The URL with any user name and password replaced, safe for logs and error messages. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username || parsed.password) {
      parsed.username = parsed.username ? '***' : '';
      parsed.password = parsed.password ? '***' : '';
    }
    return parsed.toString();
  } catch {
    return 'redis://(unparsable URL)';
  }
}

/** Removes the URL's secrets from an arbitrary message, in case a driver echoes them. */
export function scrubSecrets(message: string, url: string): string {
  try {
    const parsed = new URL(url);
    let scrubbed = message;
    for (const secret of [parsed.password, decodeURIComponent(parsed.password), url]) {
      if (secret) scrubbed = scrubbed.split(secret).join('***');
    }
    return scrubbed;
  } catch {
    return message;
  }
}

/** A client of one Redis server or of a Redis Cluster: the commands this library sends are the same. */
export type RedisClient = Redis | Cluster;

/** Reconnect forever with a capped backoff: a Redis restart must not kill the process. */
const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 6), 2000);

/**
 * A new ioredis client for `url`, connected, or a clear error naming the (redacted) URL. The
 * client is left to reconnect on its own after it was once connected.
 */
export async function connectRedis(url: string, name: string, extra: RedisOptions = {}): Promise<Redis> {
  // ioredis turns a path that is not a number into database NaN and then crashes the process
  // with an unhandled SELECT error once connected.
  if (!/^(\/[0-9]*)?$/.test(new URL(url).pathname)) {
    throw new InvalidJobQueueOptionsError([
      '"redis.url" (REDIS_URL) must end with a database index, e.g. redis://host:6379/0, or with no path (database 0)',
    ]);
  }
  const client = new Redis(url, { lazyConnect: true, connectionName: name, retryStrategy, connectTimeout: 5000, ...extra });
  // The first error says why; later ones can be follow-ups (a wrong password gives WRONGPASS,
  // then NOAUTH for the commands that were already on their way).
  let firstError: Error | undefined;
  const remember = (error: Error): void => {
    firstError ??= error;
  };
  client.on('error', remember);
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    const reason = scrubSecrets((firstError ?? (error as Error)).message, url);
    throw new JobQueueUnavailableError(
      `Cannot connect to Redis at ${redactRedisUrl(url)} (${reason}). Check REDIS_URL (redis.url) and that Redis is running.`,
    );
  }
  // A SELECT of the URL's database that Redis refuses (index out of range) is only an 'error'
  // event to ioredis, which then goes on in database 0: select it again and fail on a refusal.
  const db = client.options.db ?? 0;
  if (db !== 0) {
    try {
      await client.select(db);
    } catch (error) {
      client.disconnect();
      throw new JobQueueUnavailableError(
        `Redis at ${redactRedisUrl(url)} refused database ${db} (${scrubSecrets((error as Error).message, url)}). Check the database index in REDIS_URL (redis.url).`,
      );
    }
  }
  return client;
}

/** What a connection of this library changes from the defaults (both kinds of client take them). */
export interface ConnectionTuning {
  connectionName: string;
  enableOfflineQueue?: boolean;
  maxRetriesPerRequest?: number | null;
  commandTimeout?: number;
}

/**
 * A new ioredis `Cluster` for some of a Redis Cluster's nodes, given as `redis://` URLs (user
 * name, password and TLS are taken from the first one and used for every node), not connected yet
 * (it connects on its first command). For connections of an application's own next to this
 * module's, e.g. a dashboard's BullMQ queues.
 *
 * @publicApi
 */
export function redisClusterClient(nodes: readonly string[], tuning: ConnectionTuning): Cluster {
  const first = new URL(nodes[0]);
  const options: ClusterOptions = {
    lazyConnect: true,
    clusterRetryStrategy: retryStrategy,
    enableOfflineQueue: tuning.enableOfflineQueue ?? true,
    // ioredis' ready check on a cluster (CLUSTER INFO must not say cluster_state:fail) loses the
    // promise of `connect()` when it fails: it disconnects, and the retry that gets 'ready' belongs
    // to a new `connect()`, so the first one never settles. During a failover BullMQ's watchdog
    // reconnects a Worker's blocking connection with `await client.connect()`: that worker never
    // took a job again. `connectCluster` below would hang the same way at startup. Without the check
    // the client is ready once it has the slots; commands meanwhile get CLUSTERDOWN, which ioredis
    // retries (the module's commands connection fails fast either way).
    enableReadyCheck: false,
    redisOptions: {
      connectionName: tuning.connectionName,
      connectTimeout: 5000,
      maxRetriesPerRequest: tuning.maxRetriesPerRequest,
      commandTimeout: tuning.commandTimeout,
      ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
      ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
      ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  };
  return new Cluster(
    nodes.map((node) => {
      const url = new URL(node);
      return { host: url.hostname, port: Number(url.port) || 6379 };
    }),
    options,
  );
}

/**
 * A new client for Redis Cluster (see {@link redisClusterClient}), connected, or a clear error
 * naming the (redacted) nodes.
 */
export async function connectCluster(nodes: readonly string[], tuning: ConnectionTuning): Promise<Cluster> {
  const cluster = redisClusterClient(nodes, tuning);
  let firstError: Error | undefined;
  cluster.on('error', (error: Error) => (firstError ??= error));
  try {
    await cluster.connect();
  } catch (error) {
    cluster.disconnect();
    const reason = nodes.reduce((message, node) => scrubSecrets(message, node), (firstError ?? (error as Error)).message);
    throw new JobQueueUnavailableError(
      `Cannot connect to Redis Cluster at ${nodes.map(redactRedisUrl).join(', ')} (${reason}). Check REDIS_CLUSTER_NODES (redis.clusterNodes) and that the cluster is up.`,
    );
  }
  return cluster;
}

/** A new client like `client` (same server or cluster, same credentials) with `tuning` changed. */
export function duplicateClient(client: RedisClient, tuning: ConnectionTuning): RedisClient {
  if (client instanceof Cluster) {
    return client.duplicate([], {
      enableOfflineQueue: tuning.enableOfflineQueue ?? true,
      redisOptions: {
        ...client.options.redisOptions,
        connectionName: tuning.connectionName,
        maxRetriesPerRequest: tuning.maxRetriesPerRequest,
        commandTimeout: tuning.commandTimeout,
      },
    });
  }
  return client.duplicate(tuning);
}
