import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { DEMO_APPS, type AppProcess, type AppRoles } from '../support/app-process.js';
import { BuildApi, expectedBuildEvents, isTerminal, typesAndData, type WireEvent } from '../support/build-api.js';
import { redisConnectionsOf } from '../support/redis-clients.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * One deployment for a fault test file: a real `redis-server`, api processes that run no handlers
 * (`JOB_QUEUE_WORKER=false`) and worker processes, all separate processes on loopback; of the demo
 * apps unless `app` names other roles. Tests start, kill and stop processes of it; {@link close}
 * ends whatever is left.
 */
export class FaultCluster {
  readonly prefix = `faults-${randomUUID().slice(0, 8)}`;
  /** Every process started, for {@link close}. */
  private readonly processes: AppProcess[] = [];
  private labels = 0;

  private constructor(
    readonly redis: RedisServer,
    /** A test-side Redis client, to look at what the processes hold. */
    readonly commands: Redis,
    private readonly env: Record<string, string>,
    private readonly app: AppRoles,
  ) {}

  static async start(options: { appendOnly?: boolean; env?: Record<string, string>; app?: AppRoles } = {}): Promise<FaultCluster> {
    const redis = await RedisServer.start({ appendOnly: options.appendOnly });
    const commands = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await commands.connect();
    return new FaultCluster(
      redis,
      commands,
      { SSE_HEARTBEAT_MS: '1000', WORKER_CONCURRENCY: '3', ...options.env },
      options.app ?? DEMO_APPS,
    );
  }

  private baseEnv(extra: Record<string, string>): Record<string, string> {
    return { JOB_QUEUE_BACKEND: 'bullmq', REDIS_URL: this.redis.url, JOB_QUEUE_PREFIX: this.prefix, ...this.env, ...extra };
  }

  /** Starts an api process that runs no handlers (labelled `label` in messages); resolves once it listens. */
  async api(
    label = `api ${String.fromCharCode(65 + this.labels++)}`,
    extra: Record<string, string> = {},
  ): Promise<{ process: AppProcess; client: BuildApi }> {
    const process = await this.track(this.app.api(this.baseEnv({ JOB_QUEUE_WORKER: 'false', ...extra })));
    return { process, client: new BuildApi(process.url, label) };
  }

  /** Starts a worker process; resolves once it runs. */
  worker(extra: Record<string, string> = {}): Promise<AppProcess> {
    return this.run((env) => this.app.worker(env), extra);
  }

  /**
   * Starts a process of any kind (`start` gets the cluster's environment: `REDIS_URL`,
   * `JOB_QUEUE_PREFIX`, ... and `extra`), e.g. a worker that does not run this module; resolves
   * once `start` does. {@link close} ends it with the others.
   */
  run(start: (env: Record<string, string>) => Promise<AppProcess>, extra: Record<string, string> = {}): Promise<AppProcess> {
    return this.track(start(this.baseEnv(extra)));
  }

  private async track(starting: Promise<AppProcess>): Promise<AppProcess> {
    const process = await starting;
    this.processes.push(process);
    return process;
  }

  /**
   * Resolves once the worker process `worker` no longer holds BullMQ's blocking connection, i.e.
   * it takes no new job any more (bounded polling of `CLIENT LIST`).
   */
  async untilWorkerStopsFetching(worker: AppProcess, timeoutMs = 5000): Promise<void> {
    const name = `${this.prefix}:${Buffer.from('jobs').toString('base64')}`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const connections = await redisConnectionsOf(this.commands, worker.pid);
      if (!connections[name]) return;
      if (Date.now() > deadline)
        throw new Error(`worker ${worker.pid} still fetching jobs after ${timeoutMs} ms: ${JSON.stringify(connections)}`);
      await new Promise((resolve) => setTimeout(resolve, 20)); // polling period
    }
  }

  /** Kills every process still running (SIGKILL: a test that got here has already checked its exits), stops Redis. */
  async close(): Promise<void> {
    this.commands.disconnect();
    await Promise.all(this.processes.map((process) => process.stop('SIGKILL')));
    await this.redis.destroy();
  }
}

export const stepIndex = (event: WireEvent): number | undefined =>
  event.type === 'step' ? (event.data as { index: number }).index : undefined;

/** The events of a demo build's attempt `attempt` (`started { attempt }` first), ending with `completed` when `complete`. */
export function expectedAttempt(attempt: number, steps: number, tokensPerStep: number): Array<{ type: string; data: unknown }> {
  const events = expectedBuildEvents(steps, tokensPerStep);
  events[0] = { type: 'started', data: { attempt } };
  return events;
}

/**
 * Splits a job's events at each `started`: one list per attempt, in order. Throws unless the
 * attempts are numbered 1, 2, ... and every attempt but the last is an unfinished prefix of a
 * full run (nothing of an attempt after the next one started), and the last one a full run.
 */
export function attemptsOf(events: readonly WireEvent[], steps: number, tokensPerStep: number): WireEvent[][] {
  return attemptsMatching(events, (attempt) => expectedAttempt(attempt, steps, tokensPerStep));
}

/**
 * {@link attemptsOf} for any job: `fullRun(attempt)` is what a whole run of attempt `attempt`
 * emits, as `{ type, data }`, from its `started` to its terminal event.
 */
export function attemptsMatching(
  events: readonly WireEvent[],
  fullRun: (attempt: number) => Array<{ type: string; data: unknown }>,
): WireEvent[][] {
  const attempts: WireEvent[][] = [];
  for (const event of events) {
    if (event.type === 'started') attempts.push([]);
    if (!attempts.length) throw new Error(`an event before the first started: ${JSON.stringify(event)}`);
    attempts.at(-1)!.push(event);
  }
  attempts.forEach((attempt, i) => {
    const expected = fullRun(i + 1);
    const actual = typesAndData(attempt);
    if (i === attempts.length - 1) {
      expect({ attempt: i + 1, events: actual }).toEqual({ attempt: i + 1, events: expected });
    } else {
      expect(attempt.some((event) => isTerminal(event.type))).toBe(false);
      expect({ attempt: i + 1, events: actual }).toEqual({ attempt: i + 1, events: expected.slice(0, attempt.length) });
    }
  });
  return attempts;
}

/**
 * Checks the two attempts of a job whose worker was SIGKILLed at `killedAt`: the killed one got at
 * least two `progressType` events in, and the rerun began after the kill, within about two lock
 * periods of `lockMs` (BullMQ's stalled check runs every lock period).
 */
export function expectRerunAfterKill(attempts: readonly WireEvent[][], killedAt: number, lockMs: number, progressType: string): void {
  expect(attempts).toHaveLength(2);
  const [killedRun, rerun] = attempts;
  expect(killedRun.filter((event) => event.type === progressType).length).toBeGreaterThanOrEqual(2);
  const restartedAfterMs = rerun[0].ts! - killedAt;
  expect(restartedAfterMs).toBeGreaterThan(0);
  expect(restartedAfterMs).toBeLessThan(3 * lockMs + 1000);
}
