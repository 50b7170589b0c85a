import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import type { Express } from 'express';
import { Redis, type Cluster } from 'ioredis';
import { DEFAULT_QUEUE, JOB_QUEUE_OPTIONS, redisClusterClient, type ResolvedJobQueueOptions } from 'nestjs-job-streams';
import { REPORTS_QUEUE } from '@app/builds';
import type { AuthTokens } from '../auth/auth-tokens.js';
import { AUTH_TOKENS } from '../auth/token-auth.guard.js';
import { queueBoardAuth } from './queue-board-auth.js';

/** Where the board is served. */
export const QUEUE_BOARD_PATH = '/admin/queues';

/**
 * bull-board on the demo's BullMQ queues (`jobs`: the builds, `reports`), at
 * {@link QUEUE_BOARD_PATH}, read-only: retrying or removing a job there would bypass the job's
 * stream (a removed job's stream would never end). Only on the `bullmq` backend.
 */
@Injectable()
export class QueueBoard implements OnApplicationShutdown {
  private readonly logger = new Logger('QueueBoard');
  private connection?: Redis | Cluster;
  private queues: Queue[] = [];

  constructor(
    @Inject(ConfigService) private readonly config: ConfigService,
    @Inject(JOB_QUEUE_OPTIONS) private readonly options: ResolvedJobQueueOptions,
    @Inject(AUTH_TOKENS) private readonly tokens: AuthTokens | undefined,
  ) {}

  /** Mounts the board on `app` (before Nest's routes are set up, so that its 404 handler comes after it). */
  mount(app: Express): void {
    if (this.options.backend !== 'bullmq') return;
    // The job queue module's own resolved connection (REDIS_URL or REDIS_CLUSTER_NODES, JOB_QUEUE_PREFIX).
    const { url, clusterNodes, prefix } = this.options.redis;
    // Lazy: the job queue module reports an unreachable Redis at start, with the URL redacted.
    const tuning = { maxRetriesPerRequest: null, connectionName: `${prefix}:board` };
    this.connection = clusterNodes ? redisClusterClient(clusterNodes, tuning) : new Redis(url, { ...tuning, lazyConnect: true });
    this.connection.on('error', () => undefined);
    this.queues = [DEFAULT_QUEUE, REPORTS_QUEUE].map((name) => new Queue(name, { connection: this.connection!, prefix }));
    const server = new ExpressAdapter().setBasePath(QUEUE_BOARD_PATH);
    createBullBoard({
      queues: this.queues.map((queue) => new BullMQAdapter(queue, { readOnlyMode: true, allowRetries: false })),
      serverAdapter: server,
      options: { uiConfig: { boardTitle: 'Demo queues' } },
    });
    const admins = (this.config.get<string>('ADMIN_OWNERS') ?? '')
      .split(',')
      .map((owner) => owner.trim())
      .filter(Boolean);
    if (this.tokens && !admins.length) this.logger.warn(`No ADMIN_OWNERS: nobody may open the queue board at ${QUEUE_BOARD_PATH}`);
    app.use(QUEUE_BOARD_PATH, queueBoardAuth(this.tokens, admins), server.getRouter());
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.queues.map((queue) => queue.close().catch(() => undefined)));
    this.connection?.disconnect();
  }
}
