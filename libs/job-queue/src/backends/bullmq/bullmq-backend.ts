import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Job, Queue, type JobType } from 'bullmq';
import type { JobEvent, JobEventPage } from '../../contract/job-event.js';
import { isTerminalEventType } from '../../contract/job-event.js';
import type { JobInfo, JobState } from '../../contract/job-info.js';
import { DEFAULT_QUEUE } from '../../contract/job-queue.js';
import type { FollowRequest, JobAddress, JobQueueBackend, NewJob, PageRequest } from '../../contract/job-queue-backend.js';
import type { QueueBridgeStatus } from '../../contract/queue-bridge-status.js';
import { InvalidArgumentError } from '../../errors/invalid-argument.error.js';
import { InvalidCursorError } from '../../errors/invalid-cursor.error.js';
import { InvalidJobQueueOptionsError } from '../../errors/invalid-options.error.js';
import { JobAlreadyFinishedError } from '../../errors/job-already-finished.error.js';
import { JobNotFoundError } from '../../errors/job-not-found.error.js';
import { JobQueueError } from '../../errors/job-queue.error.js';
import { JobQueueUnavailableError } from '../../errors/job-queue-unavailable.error.js';
import { UnknownJobNameError } from '../../errors/unknown-job-name.error.js';
import { UnknownQueueError } from '../../errors/unknown-queue.error.js';
import { QueueEventsBridge } from './foreign-workers/queue-events-bridge.js';
import type { JobHandlerRegistry } from '../../handlers/job-handler-registry.js';
import type { ProcessorRegistry } from '../../handlers/processor-registry.js';
import type { QueueJobCounts } from '../../contract/queue-job-counts.js';
import type { JobQueueMeter } from '../../metrics/job-queue-meter.js';
import type { ResolvedJobQueueOptions } from '../../options/job-queue-module-options.js';
import { EventStreamReader, toEvents } from '../../reader/event-stream-reader.js';
import { assertCursor, compareStreamIds } from '../../reader/stream-id.js';
import { traceIdOf, tracedFinish } from '../../tracing/job-tracing.js';
import type { CircuitBreakerState } from '../../contract/circuit-breaker.js';
import { RedisCircuitBreakers } from './circuit-breakers.js';
import { JobEnqueue } from './job-enqueue.js';
import { jobStreamsBackend } from './job-streams-backend.js';
import { JobScripts } from './job-scripts.js';
import { RedisConnections } from './redis-connections.js';
import { ReplicaAcks } from './replica-acks.js';
import type { RedisClient } from './redis-connection.js';
import { ReadKeepAlive } from './read-keep-alive.js';
import { hashTagOf, queueFitsCluster, RedisKeys } from './redis-keys.js';

/** Ids this backend hands out; anything else is unknown without asking Redis (and never becomes a key). */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/**
 * Ids of jobs other code added to a processor queue: BullMQ's numbers, custom ids of safe
 * characters, and BullMQ's ids of the jobs a job scheduler adds (`repeat:<scheduler>:<time>`).
 */
const FOREIGN_JOB_ID = /^(?:[A-Za-z0-9_.~-]{1,200}|repeat:[A-Za-z0-9_.~-]{1,200}:[0-9]{1,16})$/;

/** What the read script told about a job along with a page (see {@link BullMqBackend.readPage}). */
interface PageFacts {
  traceId?: string;
  abandonAfterMs?: number;
}

const PAGE_FACTS = Symbol('pageFacts');

/**
 * The distributed backend, on BullMQ and Redis. This class is what every process serves reads
 * with (enqueue, read, follow through the shared {@link EventStreamReader}, cancel); on worker
 * processes its worker side ({@link BullMqWorkerSide}, the `@JobHandler` runtime) runs the jobs. Each job's events live in their own Redis
 * Stream (`<prefix>:<queue>:<id>:jq-events`, in the hash slot of the job's BullMQ keys) next to a
 * metadata hash, so any instance can serve any job.
 */
/**
 * What runs jobs in a worker process (the module's worker side, `worker/`), made from the
 * backend's parts: this backend serves it and never imports it.
 */
export interface BullMqWorkerSide {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The parts of a {@link BullMqBackend} its worker side runs jobs with. */
export interface BullMqWorkerParts {
  options: ResolvedJobQueueOptions;
  handlers: JobHandlerRegistry;
  connections: RedisConnections;
  keys: RedisKeys;
  scripts: JobScripts;
  breakers: RedisCircuitBreakers;
}

export class BullMqBackend implements JobQueueBackend {
  readonly name = 'bullmq' as const;
  private readonly logger = new Logger('JobQueue');
  private readonly keys: RedisKeys;
  private readonly scripts: JobScripts;
  private readonly enqueue: JobEnqueue;
  private readonly reader: EventStreamReader;
  private readonly keepAlive: ReadKeepAlive;
  private readonly breakers: RedisCircuitBreakers;
  /** BullMQ queues by name, for enqueue and the removal of cancelled jobs. */
  private readonly queues = new Map<string, Queue>();
  /** Runs jobs, on worker processes. */
  private readonly runtime?: BullMqWorkerSide;
  /** Bridges jobs of workers without this module from BullMQ's queue events. */
  private readonly foreign?: QueueEventsBridge;
  private stopped = false;

  private constructor(
    private readonly options: ResolvedJobQueueOptions,
    private readonly handlers: JobHandlerRegistry,
    private readonly connections: RedisConnections,
    private readonly processors: ProcessorRegistry,
    meter: JobQueueMeter | undefined,
    workerSide: ((parts: BullMqWorkerParts) => BullMqWorkerSide) | undefined,
  ) {
    this.keys = new RedisKeys(options.redis.prefix);
    const { replicaAcks, replicaAckTimeoutMs } = options.redis;
    const acks =
      replicaAcks > 0
        ? new ReplicaAcks(connections.commands, replicaAcks, replicaAckTimeoutMs, (key) => this.keys.ackBeacon(key, connections.cluster))
        : undefined;
    this.scripts = new JobScripts(connections.commands, meter, acks);
    this.enqueue = new JobEnqueue(this.scripts, acks);
    this.keepAlive = new ReadKeepAlive(this.scripts);
    // On Redis Cluster one XREAD reads one slot: a read per hash tag of followed jobs (the
    // prefix's, or one per queue that carries its own), the first on the reader connection opened
    // at start, the others on connections of their own.
    let unused: RedisClient | undefined = connections.blocking;
    this.reader = new EventStreamReader(connections.blocking, connections.commands, {
      liveKeyOf: (eventsKey) => this.keys.metaOfEvents(eventsKey),
      wakeKeyPrefix: this.keys.own,
      cluster: connections.cluster
        ? {
            groupOf: (eventsKey) => hashTagOf(eventsKey),
            openBlocking: () => {
              const blocking = unused ?? connections.forReader();
              unused = undefined;
              return blocking;
            },
          }
        : undefined,
    });
    this.breakers = new RedisCircuitBreakers(this.scripts, this.keys, options, this.logger);
    if (options.worker && workerSide) {
      this.runtime = workerSide({ options, handlers, connections, keys: this.keys, scripts: this.scripts, breakers: this.breakers });
    }
    if (options.bridgeForeignWorkers) {
      this.foreign = new QueueEventsBridge({
        scripts: this.scripts,
        keys: this.keys,
        commands: connections.commands,
        // The `@JobHandler` queue has no foreign workers: its jobs need the module's handlers.
        queues: () => (options.queues ?? processors.knownQueues()).filter((queue) => queue !== DEFAULT_QUEUE),
        retentionMs: options.retentionMs,
        maxEventsPerJob: options.maxEventsPerJob,
        maxEventBytes: options.maxEventBytes,
      });
    }
  }

  /**
   * Connects to Redis and returns the backend, or throws a `JobQueueUnavailableError` that names
   * the (redacted) URL: a process that cannot reach Redis at start should not start.
   */
  static async connect(
    options: ResolvedJobQueueOptions,
    handlers: JobHandlerRegistry,
    processors: ProcessorRegistry,
    meter?: JobQueueMeter,
    /** Makes the worker side, on worker processes (`options.worker`). */
    workerSide?: (parts: BullMqWorkerParts) => BullMqWorkerSide,
  ): Promise<BullMqBackend> {
    const connections = await RedisConnections.open(options, meter);
    try {
      return new BullMqBackend(options, handlers, connections, processors, meter, workerSide);
    } catch (error) {
      connections.close();
      throw error;
    }
  }

  async start(): Promise<void> {
    this.checkQueuesFitCluster();
    await this.runtime?.start();
    this.foreign?.start();
  }

  /**
   * False on Redis Cluster under a prefix without a hash tag: BullMQ's keys of the `@JobHandler`
   * queue (`jobs`, no tag of its own) lie in different slots there, and the queue is not used.
   */
  private get handlerQueueRuns(): boolean {
    return !this.connections.cluster || queueFitsCluster(this.options.redis.prefix, DEFAULT_QUEUE);
  }

  /**
   * On Redis Cluster, refuses to start with a queue whose BullMQ keys would lie in different slots
   * (its scripts would all fail with CROSSSLOT): under a prefix without a hash tag, `@JobHandler`
   * jobs (queue `jobs`) and queues whose names carry no tag of their own. Checked here, once the
   * application is built: handlers and processors are found only then.
   */
  private checkQueuesFitCluster(): void {
    if (this.handlerQueueRuns) return;
    const { prefix } = this.options.redis;
    const problems: string[] = [];
    const handlers = this.handlers.names();
    if (handlers.length) {
      problems.push(
        `"redis.prefix" must carry a hash tag on Redis Cluster for @JobHandler jobs (${handlers.join(', ')}): they run on the queue "${DEFAULT_QUEUE}", which has none of its own, e.g. "{${prefix}}" (got "${prefix}")`,
      );
    }
    const untagged = (this.options.queues ?? this.processors.knownQueues()).filter(
      (queue) => queue !== DEFAULT_QUEUE && !queueFitsCluster(prefix, queue),
    );
    if (untagged.length) {
      problems.push(
        `queue names must each carry a hash tag on Redis Cluster when "redis.prefix" has none, as BullMQ requires, e.g. "{${untagged[0]}}" (got ${JSON.stringify(untagged)}); or give "redis.prefix" one, e.g. "{${prefix}}"`,
      );
    }
    if (problems.length) throw new InvalidJobQueueOptionsError(problems);
  }

  /** The foreign-worker bridge of each bridged queue, as this process sees it (empty when it is off). */
  bridgeStatus(): QueueBridgeStatus[] {
    return this.foreign?.status() ?? [];
  }

  /** Ends every follow, lets the worker runtime finish or hand back its jobs, then closes the connections. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.reader.close();
    this.keepAlive.close();
    await this.foreign?.stop();
    await this.runtime?.stop();
    await Promise.all([...this.queues.values()].map((queue) => queue.close().catch(() => undefined)));
    this.connections.close();
  }

  /** The BullMQ queue `name` (made on first use, on the command connection, with a {@link jobStreamsBackend}). */
  private queueNamed(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      // Its backend composes: an enqueue's add and the job's metadata are one script.
      queue = new Queue(name, { connection: this.connections.commands, prefix: this.options.redis.prefix }, jobStreamsBackend());
      queue.on('error', (error) => this.logger.warn(`Queue ${name}: ${error.message}`));
      this.queues.set(name, queue);
    }
    return queue;
  }

  async jobCounts(): Promise<QueueJobCounts[]> {
    const names = [
      ...new Set([...(this.handlerQueueRuns ? [DEFAULT_QUEUE] : []), ...(this.options.queues ?? this.processors.knownQueues())]),
    ];
    const states: JobType[] = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'waiting-children'];
    return this.guard(() =>
      Promise.all(names.map(async (queue) => ({ queue, counts: await this.queueNamed(queue).getJobCounts(...states) }))),
    );
  }

  connectionStatus(): Record<string, string> {
    return this.connections.status();
  }

  async checkHealth(): Promise<void> {
    await this.guard(() => this.connections.commands.ping());
  }

  async add(spec: NewJob): Promise<JobInfo> {
    const { queue: queueName, name, owner } = spec;
    if (queueName === DEFAULT_QUEUE && !this.handlers.has(name) && !this.options.jobNames.includes(name)) {
      throw new UnknownJobNameError(name, [...new Set([...this.handlers.names(), ...this.options.jobNames])]);
    }
    if (queueName !== DEFAULT_QUEUE && this.options.queues !== undefined && !this.options.queues.includes(queueName)) {
      throw new UnknownQueueError(queueName, this.options.queues);
    }
    if (this.connections.cluster && !queueFitsCluster(this.options.redis.prefix, queueName)) {
      // BullMQ's keys of such a queue lie in different slots of the cluster: no add could succeed.
      throw new InvalidArgumentError(
        `queue "${queueName}" has no hash tag of its own, and the key prefix none either: on Redis Cluster BullMQ cannot use it`,
      );
    }
    const id = randomUUID();
    const maxAttempts = spec.attempts ?? this.options.defaultAttempts;
    const createdAt = Date.now();
    const retentionSeconds = Math.ceil(this.options.retentionMs / 1000);
    const metaKey = this.keys.meta(queueName, id);
    const queue = this.queueNamed(queueName);
    const job = new Job(
      queue,
      name,
      JSON.parse(spec.data),
      {
        jobId: id,
        // BullMQ's timestamp is the metadata's `createdAt`: a worker tells a job added again under
        // an ended ownerless job's id by the two differing (start-attempt.lua).
        timestamp: createdAt,
        attempts: maxAttempts,
        ...(spec.backoffMs ? { backoff: { type: 'fixed', delay: spec.backoffMs } } : {}),
        priority: spec.priority,
        removeOnComplete: { age: retentionSeconds },
        removeOnFail: { age: retentionSeconds },
      },
      id,
    );
    await this.guard(async () => {
      const client = await queue.getBackend().client;
      await this.enqueue.run(
        metaKey,
        {
          owner,
          name,
          state: 'queued',
          attempt: 0,
          maxAttempts,
          createdAt,
          // Read as of its creation: unread from then on, it is abandoned after this long.
          ...(spec.abandonAfterMs ? { abandonAfterMs: spec.abandonAfterMs, readAt: createdAt } : {}),
          ...spec.trace,
        },
        { add: () => job.addJob(client), remove: () => queue.remove(id) },
      );
    });
    return { id, name, state: 'queued', attempt: 0, maxAttempts, createdAt };
  }

  async getJob(id: string, address: JobAddress): Promise<JobInfo> {
    const { queue } = address;
    this.assertWellFormed(queue, id, address);
    const read = () => this.scripts.readJob(this.keys.meta(queue, id), address.owner);
    let meta = await this.guard(read);
    if (!meta && (await this.adopted(queue, id, address))) meta = await this.guard(read);
    if (!meta) throw new JobNotFoundError(id);
    const info = this.toInfo(id, meta);
    if (info.state === 'queued') {
      const waitingFor = await this.guard(() => this.breakers.waitingFor(info.name, queue, id));
      if (waitingFor) info.waitingFor = waitingFor;
    }
    return info;
  }

  async circuitBreakers(): Promise<CircuitBreakerState[]> {
    const names = this.options.circuitBreaker ? [...this.handlers.names(), ...this.options.jobNames] : [];
    return this.guard(() => this.breakers.states(names));
  }

  /**
   * A processor job added with plain BullMQ (no owner) has no metadata of ours until a worker
   * starts it; a system-level read (no owner) gives it one when BullMQ has the job, so that it can
   * be followed from the start. True when it may have one now: read it again. Also when BullMQ
   * has no such job any more: a worker may have started and finished it since the first read,
   * writing its metadata then (a plain add followed at once).
   */
  private async adopted(queue: string, id: string, address: JobAddress): Promise<boolean> {
    if (queue === DEFAULT_QUEUE || address.owner !== undefined) return false;
    if (this.options.queues !== undefined && !this.options.queues.includes(queue)) return false;
    await this.guard(() => this.scripts.ensureJob(this.keys.meta(queue, id), this.keys.bullJob(queue, id), Date.now()));
    return true;
  }

  async readPage(id: string, options: PageRequest): Promise<JobEventPage> {
    const { queue } = options;
    this.assertWellFormed(queue, id, options);
    assertCursor(options.after);
    const eventsKey = this.keys.events(queue, id);
    const read = () => this.scripts.readEvents(this.keys.meta(queue, id), eventsKey, options.owner, options.after, options.limit);
    let page = await this.guard(read);
    if (page.status === 'gone' && (await this.adopted(queue, id, options))) page = await this.guard(read);
    if (page.status === 'gone') throw new JobNotFoundError(id);
    if (page.status === 'cursor') throw new InvalidCursorError(options.after);
    const { terminal, entries, traceId } = page;
    let events = toEvents(entries, traceId);
    if (!events.length && !terminal && options.waitMs > 0 && !this.stopped) {
      const subscription = this.reader.subscribe(eventsKey, options.after, traceId);
      // A long-poll waiting for the next event still reads the job.
      const release = page.abandonAfterMs ? this.keepAlive.hold(this.keys.meta(queue, id), page.abandonAfterMs) : undefined;
      try {
        events = (await subscription.next(options.waitMs, options.signal)).slice(0, options.limit);
      } finally {
        release?.();
        subscription.close();
      }
    }
    const last = events.length ? events[events.length - 1].id : options.after;
    const done =
      events.some((event) => isTerminalEventType(event.type)) || (terminal !== undefined && compareStreamIds(terminal, last) <= 0);
    const result: JobEventPage = { events, next: last, done };
    // Hidden from JSON and from callers: what the read script told about the job, for a follow after this page.
    Object.defineProperty(result, PAGE_FACTS, { value: { traceId, abandonAfterMs: page.abandonAfterMs } satisfies PageFacts });
    return result;
  }

  /** Follows through the shared reader: no Redis connection and no polling per follower. */
  async *followAfter(id: string, page: JobEventPage, options: FollowRequest): AsyncGenerator<JobEvent[], void, undefined> {
    if (this.stopped) return;
    const metaKey = this.keys.meta(options.queue, id);
    // The read script that made `page` told the job's trace id and abandonAfterMs already; only a
    // page this backend did not make (a caller's own) needs them asked for, before subscribing,
    // so that no event lacks its trace id.
    let facts = (page as JobEventPage & { [PAGE_FACTS]?: PageFacts })[PAGE_FACTS];
    if (!facts) {
      const [abandonAfterMs, traceparent] = await this.guard(() =>
        this.connections.commands.hmget(metaKey, 'abandonAfterMs', 'traceparent'),
      );
      facts = { traceId: traceIdOf(traceparent ?? undefined), abandonAfterMs: Number(abandonAfterMs) || undefined };
    }
    const subscription = this.reader.subscribe(this.keys.events(options.queue, id), page.next, facts.traceId);
    // A follower reads the job for as long as it follows: one touch per period, never per event.
    const release = facts.abandonAfterMs ? this.keepAlive.hold(metaKey, facts.abandonAfterMs) : undefined;
    // Closing the subscription ends its wait: one listener for the whole follow, none per wait.
    const stop = (): void => subscription.close();
    options.signal?.addEventListener('abort', stop, { once: true });
    try {
      while (!options.signal?.aborted && !this.stopped && !subscription.closed) {
        const events = await subscription.next(Infinity);
        if (!events.length) continue;
        const end = events.findIndex((event) => isTerminalEventType(event.type));
        yield end === -1 ? events : events.slice(0, end + 1);
        if (end !== -1) return;
      }
    } finally {
      release?.();
      options.signal?.removeEventListener('abort', stop);
      subscription.close();
    }
    // Expired or lost while followed: say so, rather than end as if the stream were complete.
    if (subscription.gone) throw new JobNotFoundError(id);
  }

  async cancel(id: string, options: JobAddress & { reason: string }): Promise<JobInfo> {
    const { queue, reason } = options;
    this.assertWellFormed(queue, id, options);
    // Existence and ownership first (a plain BullMQ job is adopted for a system-level cancel).
    const { name, attempt } = await this.getJob(id, options);
    const reply = await tracedFinish({ system: 'bullmq', queue, name, id, attempt: attempt || undefined, state: 'cancelled' }, () =>
      this.guard(() =>
        this.scripts.finishJob(
          this.keys.meta(queue, id),
          this.keys.events(queue, id),
          'cancelled',
          JSON.stringify({ reason }),
          Date.now(),
          this.options.retentionMs,
          undefined,
          undefined,
        ),
      ),
    );
    if (reply.status === 'final') throw new JobAlreadyFinishedError(id, reply.state);
    // ('stale' needs an attempt to compare with; a cancel gives none.)
    if (reply.status !== 'ok') throw new JobNotFoundError(id);
    // The terminal event is written: now make the worker stop. Both steps are best effort; a
    // worker also sees the terminal event at its next start or append.
    await this.guard(async () => {
      await this.connections.commands.publish(this.keys.cancelChannel(), `${queue}\n${id}`);
      await this.withdraw(queue, id, reply.attempt);
    }).catch((error: unknown) =>
      this.logger.warn(`Cancel of ${id} is recorded, but notifying workers failed: ${(error as Error).message}`),
    );
    return this.getJob(id, options);
  }

  /**
   * BullMQ's side of a cancel. A job no worker had started (`startedAttempts` 0) is removed: it
   * never runs (BullMQ refuses to remove one a worker has just taken; that worker finds the
   * cancel when it starts the attempt and fails the job). A job that had started is never
   * removed: its worker stops it through the cancel message and BullMQ keeps it in its failed set
   * with the processor's error and its logs (removing it could erase it once the worker had
   * moved it there). One waiting out a retry's backoff is promoted, so that a worker fails it now
   * instead of after the backoff.
   */
  private async withdraw(queue: string, id: string, startedAttempts: number): Promise<void> {
    const bullQueue = this.queueNamed(queue);
    if (startedAttempts === 0) {
      await bullQueue.remove(id).catch(() => 0);
      return;
    }
    const job = await bullQueue.getJob(id);
    if (job && (await job.isDelayed())) await job.promote().catch(() => undefined);
  }

  /**
   * Ids that could never be a job of `queue` are unknown without asking Redis (and never become
   * keys); so is every job to an empty owner (jobs added without an owner are stored with an empty
   * one, and only system access, without `owner`, reaches them).
   */
  private assertWellFormed(queue: string, id: string, address: JobAddress): void {
    if (typeof id !== 'string' || !(queue === DEFAULT_QUEUE ? JOB_ID : FOREIGN_JOB_ID).test(id) || address.owner === '') {
      throw new JobNotFoundError(String(id));
    }
  }

  private toInfo(id: string, meta: Record<string, string>): JobInfo {
    const info: JobInfo = {
      id,
      name: meta.name,
      state: meta.state as JobState,
      attempt: Number(meta.attempt),
      maxAttempts: Number(meta.maxAttempts),
      createdAt: Number(meta.createdAt),
    };
    if (meta.startedAt) info.startedAt = Number(meta.startedAt);
    if (meta.finishedAt) info.finishedAt = Number(meta.finishedAt);
    if (meta.state === 'completed' && meta.result !== undefined) info.result = JSON.parse(meta.result);
    if (meta.state === 'failed' && meta.error !== undefined) info.error = JSON.parse(meta.error);
    return info;
  }

  /** Runs a Redis operation; anything but our own typed errors becomes a 503-style error. */
  private async guard<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (error instanceof JobQueueError) throw error;
      throw this.unavailable(error);
    }
  }

  private unavailable(cause: unknown): JobQueueUnavailableError {
    this.logger.debug?.(`Redis unavailable: ${(cause as Error)?.message}`);
    return new JobQueueUnavailableError('The job queue backend (Redis) is unavailable; retry shortly', 1, { cause });
  }
}
