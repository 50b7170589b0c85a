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
