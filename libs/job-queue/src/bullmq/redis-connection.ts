import { Redis, type RedisOptions } from 'ioredis';
import { JobQueueUnavailableError } from '../errors/job-queue-unavailable.error.js';

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

/** Reconnect forever with a capped backoff: a Redis restart must not kill the process. */
const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 6), 2000);

/**
 * A new ioredis client for `url`, connected, or a clear error naming the (redacted) URL. The
 * client is left to reconnect on its own after it was once connected.
 */
export async function connectRedis(url: string, name: string, extra: RedisOptions = {}): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true, connectionName: name, retryStrategy, connectTimeout: 5000, ...extra });
  let lastError: Error | undefined;
  const remember = (error: Error): void => {
    lastError = error;
  };
  client.on('error', remember);
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    const reason = scrubSecrets((lastError ?? (error as Error)).message, url);
    throw new JobQueueUnavailableError(
      `Cannot connect to Redis at ${redactRedisUrl(url)} (${reason}). Check REDIS_URL (redis.url) and that Redis is running.`,
    );
  }
  return client;
}
