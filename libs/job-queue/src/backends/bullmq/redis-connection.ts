import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { InvalidJobQueueOptionsError } from '../../errors/invalid-options.error.js';
import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';
import { DEFAULT_FAILOVER_TIMEOUT_MS, failoverTimeoutProblem } from '../../options/failover-timeout.js';

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
  /**
   * Redis Cluster only: how long a command rides out the failover of its slot's master (ms), see
   * {@link clusterFailoverOptions}. Unset: ioredis' own budget (16 redirections), which gives up
   * about 1 to 1.3 s into a failover; right for connections that should fail fast.
   */
  failoverTimeoutMs?: number;
}

/** Pause before a Cluster client tries a command again after a lost node, `CLUSTERDOWN` or `TRYAGAIN` (ioredis' default). */
const CLUSTER_RETRY_DELAY_MS = 100;

/** ioredis' own budget of redirections, kept for the `MOVED`/`ASK` of a healthy cluster (slot migrations). */
const IOREDIS_MAX_REDIRECTIONS = 16;

/** The ioredis `Cluster` options that {@link clusterFailoverOptions} sets. */
export type ClusterFailoverOptions = Required<
  Pick<ClusterOptions, 'maxRedirections' | 'retryDelayOnFailover' | 'retryDelayOnClusterDown' | 'retryDelayOnTryAgain'>
>;

/**
 * ioredis `Cluster` options under which a command waits through the failover of its slot's
 * master, for at least `failoverTimeoutMs`, instead of failing: until a replica is promoted the
 * command finds the master gone (no connection, or a `MOVED` to it from another node) or the
 * cluster down, and ioredis tries again every 100 ms, refreshing its slot map, but spends one of
 * its `maxRedirections` on each error and gives up with "Too many Cluster redirections" when none
 * is left. ioredis' default of 16 lasts about 1 to 1.3 s, less than a promotion takes (Redis marks
 * a master failed after `cluster-node-timeout`, then elects a replica: about 2.2 to 3.0 s after a
 * SIGKILL with a node timeout of 1 s). A try costs one redirection, or two (a `MOVED` to the lost
 * master, then its refused connection), so the budget is two per 100 ms of `failoverTimeoutMs`,
 * plus ioredis' 16 for ordinary redirections: a command waits at least `failoverTimeoutMs` and at
 * most about twice that (7.5 s for 3 s, measured while a master and its replica were both down).
 *
 * For an ioredis `Cluster` of an application's own that BullMQ workers use:
 * `new Cluster(nodes, { ...clusterFailoverOptions(20_000), enableReadyCheck: false, redisOptions })`.
 *
 * @throws InvalidJobQueueOptionsError when `failoverTimeoutMs` is not an integer from 1000 to 600000.
 * @publicApi
 */
export function clusterFailoverOptions(failoverTimeoutMs: number = DEFAULT_FAILOVER_TIMEOUT_MS): ClusterFailoverOptions {
  const problem = failoverTimeoutProblem(failoverTimeoutMs, '"failoverTimeoutMs"');
  if (problem) throw new InvalidJobQueueOptionsError([problem]);
  return {
    maxRedirections: 2 * Math.ceil(failoverTimeoutMs / CLUSTER_RETRY_DELAY_MS) + IOREDIS_MAX_REDIRECTIONS,
    retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
  };
}

/** The retry settings of a Cluster connection with `tuning`: a failover budget, or ioredis' defaults (fail fast). */
function clusterRetryOptions(tuning: ConnectionTuning): ClusterFailoverOptions {
  if (tuning.failoverTimeoutMs !== undefined) return clusterFailoverOptions(tuning.failoverTimeoutMs);
  return {
    maxRedirections: IOREDIS_MAX_REDIRECTIONS,
    retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
  };
}

/**
 * A new ioredis `Cluster` for some of a Redis Cluster's nodes, given as `redis://` URLs (user
 * name, password and TLS are taken from the first one and used for every node), not connected yet
 * (it connects on its first command). For connections of an application's own next to this
 * module's, e.g. a dashboard's BullMQ queues. Give a connection that runs jobs (a BullMQ
 * `Worker`'s) `tuning.failoverTimeoutMs`, so that its commands wait through a failover.
 *
 * @publicApi
 */
export function redisClusterClient(nodes: readonly string[], tuning: ConnectionTuning): Cluster {
  const first = new URL(nodes[0]);
  const options: ClusterOptions = {
    lazyConnect: true,
    clusterRetryStrategy: retryStrategy,
    enableOfflineQueue: tuning.enableOfflineQueue ?? true,
    ...clusterRetryOptions(tuning),
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
      ...clusterRetryOptions(tuning),
      redisOptions: {
        ...client.options.redisOptions,
        connectionName: tuning.connectionName,
        maxRetriesPerRequest: tuning.maxRetriesPerRequest,
        commandTimeout: tuning.commandTimeout,
      },
    });
  }
  // A single server has no failover to wait through: it reconnects (and waits) on its own.
  const { failoverTimeoutMs: _clusterOnly, ...options } = tuning;
  return client.duplicate(options);
}
