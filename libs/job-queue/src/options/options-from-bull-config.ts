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
    options?: BullSharedConfig['connection'];
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

/**
 * Fills in what the options leave open from `BullModule.forRoot`'s shared configuration, so that
 * one connection setting serves both modules: the Redis URL and the key prefix (the bridged
 * queues' jobs live under BullMQ's prefix). Options given explicitly win.
 */
export function withBullSharedConfig(options: JobQueueModuleOptions, bull: BullSharedConfig | undefined): JobQueueModuleOptions {
  if (!bull || options.backend !== 'bullmq') return options;
  const url = options.redis?.url ?? urlOf(bull.connection);
  const prefix = options.redis?.prefix ?? bull.prefix ?? 'bull';
  return { ...options, redis: { ...options.redis, ...(url === undefined ? {} : { url }), prefix } };
}
