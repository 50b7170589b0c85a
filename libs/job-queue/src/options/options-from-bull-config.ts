import type { JobQueueModuleOptions } from './job-queue-module-options.js';

/** The part of `@nestjs/bullmq`'s shared configuration (`BullModule.forRoot`) this module reads. */
export interface BullSharedConfig {
  prefix?: string;
  connection?: {
    url?: string;
    host?: string;
    port?: number;
    username?: string;
    password?: string;
    db?: number;
    tls?: unknown;
    /** An ioredis instance keeps its settings here. */
    options?: BullSharedConfig['connection'] & { redisOptions?: { username?: string; password?: string; tls?: unknown } };
    /** Set on an ioredis `Cluster`. */
    isCluster?: boolean;
    /** An ioredis `Cluster`'s start nodes. */
    startupNodes?: Array<string | number | { host?: string; port?: number | string }>;
  };
}

/** A redis:// (or rediss://) URL for a BullMQ connection given as options or as an ioredis instance, if it names one. */
function urlOf(connection: BullSharedConfig['connection']): string | undefined {
  if (!connection || typeof connection !== 'object') return undefined;
  if (typeof connection.url === 'string') return connection.url;
  const settings = connection.options && typeof connection.options === 'object' ? connection.options : connection;
  if (typeof settings.host !== 'string' && typeof settings.port !== 'number') return undefined;
  const host = settings.host ?? '127.0.0.1';
  const url = new URL(`${settings.tls ? 'rediss' : 'redis'}://${host.includes(':') ? `[${host}]` : host}:${settings.port ?? 6379}`);
  if (settings.username) url.username = encodeURIComponent(settings.username);
  if (settings.password) url.password = encodeURIComponent(settings.password);
  if (settings.db) url.pathname = `/${settings.db}`;
  return url.toString();
}

/** Redis Cluster's start nodes as URLs, for a BullMQ connection that is an ioredis `Cluster`. */
function clusterNodesOf(connection: BullSharedConfig['connection']): string[] | undefined {
  if (!connection || typeof connection !== 'object' || connection.isCluster !== true || !Array.isArray(connection.startupNodes)) {
    return undefined;
  }
  const auth = connection.options?.redisOptions ?? {};
  return connection.startupNodes.map((node) => {
    if (typeof node === 'string' && /^rediss?:\/\//.test(node)) return node; // already a URL, credentials and all
    const [host, port] =
      typeof node === 'object'
        ? [node.host ?? '127.0.0.1', node.port ?? 6379]
        : typeof node === 'number'
          ? ['127.0.0.1', node]
          : [node.slice(0, node.lastIndexOf(':')) || node, node.includes(':') ? node.slice(node.lastIndexOf(':') + 1) : 6379];
    const url = new URL(`${auth.tls ? 'rediss' : 'redis'}://${host.includes(':') ? `[${host}]` : host}:${port}`);
    if (auth.username) url.username = encodeURIComponent(auth.username);
    if (auth.password) url.password = encodeURIComponent(auth.password);
    return url.toString();
  });
}

/**
 * Fills in what the options leave open from `BullModule.forRoot`'s shared configuration, so that
 * one connection setting serves both modules: the Redis URL and the key prefix (the bridged
 * queues' jobs live under BullMQ's prefix). Options given explicitly win.
 */
export function withBullSharedConfig(options: JobQueueModuleOptions, bull: BullSharedConfig | undefined): JobQueueModuleOptions {
  if (!bull || options.backend !== 'bullmq') return options;
  const prefix = options.redis?.prefix ?? bull.prefix ?? 'bull';
  const clusterNodes = options.redis?.url === undefined ? (options.redis?.clusterNodes ?? clusterNodesOf(bull.connection)) : undefined;
  if (clusterNodes) return { ...options, redis: { ...options.redis, clusterNodes, prefix } };
  const url = options.redis?.url ?? urlOf(bull.connection);
  return { ...options, redis: { ...options.redis, ...(url === undefined ? {} : { url }), prefix } };
}
