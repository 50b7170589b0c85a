import { afterAll, beforeAll } from '@jest/globals';
import { Redis } from 'ioredis';
import { JobScripts } from '../../src/backends/bullmq/job-scripts.js';
import { RedisServer } from '../../../../test/support/redis-server.js';

/** A real redis-server for a file's tests, with a client and the module's scripts on it. */
export interface ScriptsRedis {
  server: RedisServer;
  client: Redis;
  scripts: JobScripts;
}

/**
 * Starts a redis-server before the tests of the calling `describe` and stops it after them; the
 * returned object is filled in once it runs (read its fields inside tests and hooks).
 */
export function useScriptsRedis(): ScriptsRedis {
  const redis = {} as ScriptsRedis;
  beforeAll(async () => {
    redis.server = await RedisServer.start();
    redis.client = new Redis(redis.server.url);
    redis.scripts = new JobScripts(redis.client);
  });
  afterAll(async () => {
    redis.client?.disconnect();
    await redis.server?.destroy();
  });
  return redis;
}
