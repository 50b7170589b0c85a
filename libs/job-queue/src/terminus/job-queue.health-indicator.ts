import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { JobQueue } from '../contract/job-queue.js';
import { JobQueueUnavailableError } from '../errors/job-queue-unavailable.error.js';

/** Limits of {@link JobQueueHealthIndicator.isHealthy}. */
export interface JobQueueHealthOptions {
  /**
   * A foreign-worker bridge this process leads that is further behind BullMQ's events stream than
   * this is reported down (default 30000 ms). Lag shows a bridge that cannot keep up: its events
   * reach clients late, and entries it has not read may be trimmed (see the README's Foreign workers).
   */
  maxBridgeLagMs?: number;
  /**
   * The check answers "down" when the backend has not answered within this many ms (default 500):
   * a hung Redis must get a 503 before the prober's own timeout (Kubernetes' default is 1 s).
   */
  timeoutMs?: number;
}

const DEFAULT_MAX_BRIDGE_LAG_MS = 30_000;

/**
 * A `@nestjs/terminus` health indicator for the job queue: the backend is reachable (a Redis
 * round trip on `bullmq`), the shared event reader is connected, and the foreign-worker bridges
 * this process leads keep up. Put it in
 * your own `HealthCheckService` checks, typically a readiness route:
 *
 * @example
 * ```ts
 * @Get('ready')
 * @HealthCheck()
 * ready() {
 *   return this.health.check([() => this.jobQueue.isHealthy('jobQueue')]);
 * }
 * ```
 *
 * Import `TerminusModule` in the module that provides it. Liveness routes should not use it: a
 * Redis outage is not a reason to restart every api process (they reconnect by themselves).
 *
 * @publicApi
 */
@Injectable()
export class JobQueueHealthIndicator {
  constructor(
    @Inject(JobQueue) private readonly queue: JobQueue,
    @Inject(HealthIndicatorService) private readonly indicators: HealthIndicatorService,
  ) {}

  /** `{ [key]: { status: 'up' | 'down', backend, bridges, message? } }`; never throws. */
  async isHealthy(key: string, options: JobQueueHealthOptions = {}): Promise<HealthIndicatorResult> {
    const session = this.indicators.check(key);
    const maxLagMs = options.maxBridgeLagMs ?? DEFAULT_MAX_BRIDGE_LAG_MS;
    const bridges = this.queue
      .bridgeStatus()
      .filter((bridge) => bridge.leading)
      .map(({ queue, lagMs, lagEntries }) => ({ queue, lagMs, lagEntries }));
    const connections = this.queue.connectionStatus();
    const details = { backend: this.queue.backend, connections, bridges };
    try {
      await this.queue.checkHealth({ timeoutMs: options.timeoutMs });
    } catch (error) {
      // Only the library's own message: it names the backend, never a credential.
      const message = error instanceof JobQueueUnavailableError ? error.message : 'The job queue backend is unavailable';
      return session.down({ ...details, message });
    }
    // Followers wait on the shared reader: without its connection no event reaches them.
    if (connections.reader !== undefined && connections.reader !== 'ready') {
      return session.down({ ...details, message: `The shared event reader's Redis connection is ${connections.reader}` });
    }
    const behind = bridges.filter((bridge) => bridge.lagMs > maxLagMs);
    if (behind.length) {
      const queues = behind.map((bridge) => `"${bridge.queue}" (${bridge.lagMs} ms)`).join(', ');
      return session.down({ ...details, message: `The foreign-worker bridge of ${queues} is more than ${maxLagMs} ms behind` });
    }
    return session.up(details);
  }
}
