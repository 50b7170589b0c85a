import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { Counter, Gauge, Histogram, register as defaultRegistry, type Metric, type Registry } from 'prom-client';
import { JobQueue } from '../contract/job-queue.js';
import type { QueueBridgeStatus } from '../contract/queue-bridge-status.js';
import { JobQueueMeter, type CancelCause, type DeliveryKind, type JobQueueMeterSink } from './job-queue-meter.js';

/** Options of {@link JobQueueMetricsModule.forRoot}. */
export interface JobQueueMetricsOptions {
  /** The registry to register on (default prom-client's global `register`, which `/metrics` handlers usually serve). */
  registry?: Registry;
  /** Prefix of every metric name (default `job_queue_`). */
  prefix?: string;
}

/**
 * `read`, shared while in flight: prom-client collects a scrape's gauges at once, so the gauges of
 * one scrape share one answer instead of each asking the backend again (never a stale one).
 */
function sharedWhileInFlight<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => (pending ??= read().finally(() => (pending = undefined)));
}

/** Injection token of the {@link JobQueueMetricsOptions}. @internal */
export const JOB_QUEUE_METRICS_OPTIONS = Symbol('JOB_QUEUE_METRICS_OPTIONS');

/**
 * The job queue's Prometheus metrics, registered on the application's registry. Labels are
 * few-valued (queue, state, delivery, cause, connection): no job id, owner or event type.
 *
 * @publicApi
 */
@Injectable()
export class JobQueueMetrics implements JobQueueMeterSink, OnModuleInit, OnModuleDestroy {
  readonly registry: Registry;
  private readonly metrics: Metric[] = [];
  private readonly enqueuedTotal: Counter<'queue'>;
  private readonly finishedTotal: Counter<'queue' | 'state'>;
  private readonly appendedTotal: Counter<'queue'>;
  private readonly batchSize: Histogram;
  private readonly deliveredTotal: Counter<'delivery'>;
  private readonly deliveryDelay: Histogram<'delivery'>;
  private readonly followers: Gauge<'delivery'>;
  private readonly cancelsTotal: Counter<'cause'>;
  private readonly redisErrorsTotal: Counter<'connection'>;
  private readonly redisReconnectsTotal: Counter<'connection'>;

  constructor(
    @Inject(JobQueue) private readonly queue: JobQueue,
    @Inject(JobQueueMeter) private readonly meter: JobQueueMeter,
    @Inject(JOB_QUEUE_METRICS_OPTIONS) options: JobQueueMetricsOptions,
  ) {
    const prefix = options.prefix ?? 'job_queue_';
    const registers = [(this.registry = options.registry ?? defaultRegistry)];
    const add = <T extends Metric>(metric: T): T => {
      this.metrics.push(metric);
      return metric;
    };
    this.enqueuedTotal = add(
      new Counter({
        name: `${prefix}jobs_enqueued_total`,
        help: 'Jobs enqueued through JobQueue by this process.',
        labelNames: ['queue'],
        registers,
      }),
    );
    this.finishedTotal = add(
      new Counter({
        name: `${prefix}jobs_finished_total`,
        help: 'Terminal events this process wrote, by final state.',
        labelNames: ['queue', 'state'],
        registers,
      }),
    );
    const jobQueue = this.queue;
    /** A gauge read at scrape time: `rows` gives its samples (read first, then set all at once, so scrapes never see it half-filled). */
    const reading = <L extends string>(
      name: string,
      help: string,
      labelNames: L[],
      rows: () => Promise<Array<[Record<L, string>, number]>>,
    ): void => {
      add(
        new Gauge<L>({
          name: `${prefix}${name}`,
          help,
          labelNames,
          registers,
          async collect() {
            let samples: Array<[Record<L, string>, number]> = [];
            try {
              samples = await rows();
            } catch {
              // The backend is away: no samples (the Redis error counters and /health tell why).
            }
            this.reset();
            for (const [labels, value] of samples) this.set(labels as never, value);
          },
        }),
      );
    };
    reading('jobs', "Jobs per queue and state, as the backend counts them (BullMQ's states on bullmq).", ['queue', 'state'], async () =>
      (await jobQueue.jobCounts()).flatMap(({ queue, counts }) =>
        Object.entries(counts).map(([state, count]) => [{ queue, state }, count] as [Record<'queue' | 'state', string>, number]),
      ),
    );
    this.appendedTotal = add(
      new Counter({
        name: `${prefix}events_appended_total`,
        help: "Events this process wrote to jobs' streams (lifecycle events included).",
        labelNames: ['queue'],
        registers,
      }),
    );
    this.batchSize = add(
      new Histogram({
        name: `${prefix}append_batch_size`,
        help: 'Events per write to a job stream.',
        buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
        registers,
      }),
    );
    this.deliveredTotal = add(
      new Counter({
        name: `${prefix}events_delivered_total`,
        help: 'Events written to HTTP clients, by delivery.',
        labelNames: ['delivery'],
        registers,
      }),
    );
    this.deliveryDelay = add(
      new Histogram({
        name: `${prefix}event_delivery_delay_seconds`,
        help: 'From an event being recorded to its being written to an HTTP client (how far readers lag).',
        labelNames: ['delivery'],
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      }),
    );
    this.followers = add(
      new Gauge({ name: `${prefix}followers`, help: 'Open SSE and NDJSON streams.', labelNames: ['delivery'], registers }),
    );
    this.cancelsTotal = add(
      new Counter({
        name: `${prefix}cancels_total`,
        help: 'Cancels, by what led to them (request, disconnect, abandoned).',
        labelNames: ['cause'],
        registers,
      }),
    );
    this.redisErrorsTotal = add(
      new Counter({ name: `${prefix}redis_errors_total`, help: 'Redis connection errors.', labelNames: ['connection'], registers }),
    );
    this.redisReconnectsTotal = add(
      new Counter({ name: `${prefix}redis_reconnects_total`, help: 'Redis reconnect attempts.', labelNames: ['connection'], registers }),
    );
    const breakerStates = { closed: 0, 'half-open': 1, open: 2 } as const;
    const circuitBreakers = sharedWhileInFlight(() => jobQueue.circuitBreakers());
    reading(
      'circuit_breaker_state',
      'State of each circuit breaker, shared by every worker: 0 closed, 1 half-open (a probe runs), 2 open.',
      ['name'],
      async () => (await circuitBreakers()).map((breaker) => [{ name: breaker.name }, breakerStates[breaker.state]]),
    );
    reading(
      'circuit_breaker_recent_failures',
      "Failed attempts within each circuit breaker's window, counted across every worker.",
      ['name'],
      async () => (await circuitBreakers()).map((breaker) => [{ name: breaker.name }, breaker.recentFailures]),
    );
    const bridges = async (
      which: 'all' | 'led',
      value: (bridge: QueueBridgeStatus) => number,
    ): Promise<Array<[Record<'queue', string>, number]>> =>
      jobQueue
        .bridgeStatus()
        .filter((bridge) => which === 'all' || bridge.leading)
        .map((bridge) => [{ queue: bridge.queue }, value(bridge)]);
    reading('bridge_leading', '1 for each queue whose foreign-worker bridge this process leads.', ['queue'], () =>
      bridges('all', (bridge) => (bridge.leading ? 1 : 0)),
    );
    reading('bridge_lag_seconds', "How far a bridge this process leads is behind BullMQ's events stream.", ['queue'], () =>
      bridges('led', (bridge) => bridge.lagMs / 1000),
    );
    reading(
      'bridge_lag_entries',
      "Entries of BullMQ's events stream a bridge this process leads has not read yet (before Redis 7: at least).",
      ['queue'],
      () => bridges('led', (bridge) => bridge.lagEntries),
    );
    reading('bridge_takeovers', 'Bridge takeovers by this process since it started.', ['queue'], () =>
      bridges('all', (bridge) => bridge.takeovers),
    );
    reading(
      'bridge_gaps',
      'Gaps (entries BullMQ trimmed before the bridge read them) this process found since it started.',
      ['queue'],
      () => bridges('all', (bridge) => bridge.gaps),
    );
    reading(
      'bridge_reads',
      "Reads of BullMQ's events stream that returned entries, by the bridge of this process, since it started.",
      ['queue'],
      () => bridges('all', (bridge) => bridge.reads),
    );
    reading('bridge_entries_read', "Entries those reads returned (divided by bridge_reads: the bridge's average batch).", ['queue'], () =>
      bridges('all', (bridge) => bridge.entriesRead),
    );
  }

  onModuleInit(): void {
    this.meter.sink = this;
  }

  /** Takes the metrics off the registry, so that another application in the process can register them again. */
  onModuleDestroy(): void {
    if (this.meter.sink === this) this.meter.sink = undefined;
    for (const metric of this.metrics) this.registry.removeSingleMetric((metric as unknown as { name: string }).name);
  }

  enqueued(queue: string): void {
    this.enqueuedTotal.inc({ queue });
  }

  appended(queue: string, events: number): void {
    this.appendedTotal.inc({ queue }, events);
    this.batchSize.observe(events);
  }

  finished(queue: string, state: 'completed' | 'failed' | 'cancelled'): void {
    this.finishedTotal.inc({ queue, state });
  }

  cancelled(cause: CancelCause): void {
    this.cancelsTotal.inc({ cause });
  }

  delivered(delivery: DeliveryKind, events: number, delayMs: number): void {
    this.deliveredTotal.inc({ delivery }, events);
    this.deliveryDelay.observe({ delivery }, Math.max(0, delayMs) / 1000);
  }

  streamOpened(delivery: DeliveryKind): void {
    this.followers.inc({ delivery });
  }

  streamClosed(delivery: DeliveryKind): void {
    this.followers.dec({ delivery });
  }

  redisError(connection: string): void {
    this.redisErrorsTotal.inc({ connection });
  }

  redisReconnect(connection: string): void {
    this.redisReconnectsTotal.inc({ connection });
  }
}
