import 'reflect-metadata';
import { Module, type DynamicModule } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { Cluster } from 'ioredis';
import { JobQueue, JobQueueModule, JobQueueWorker, type JobEvent, type JobQueueModuleOptions } from 'nestjs-job-streams';
import { ContractTestHandlers } from './test-handlers.js';
import { CONTRACT_PROCESSORS, PROCESSOR_QUEUE_NAMES, decodeProcessorEvent, processorQueueFor } from './test-processors.js';

/**
 * The two kinds of job the contract suite checks: `@JobHandler` jobs of the default queue, and
 * jobs of plain `@nestjs/bullmq` processors (bridged by `JobQueueWorker` on `bullmq`, run by the
 * library itself on `memory`). Every test body is written once; a kind says how to start an
 * application that runs its jobs, which queue its jobs go to, and how to read its events back as
 * the job events the test expects.
 */

/** Module options a test may add to the backend's own (`backend`, connection, ...). */
export type ContractOptions = Omit<Partial<JobQueueModuleOptions>, 'backend'>;

/** The part of {@link JobQueue} the suite uses. */
export type ContractQueue = Pick<JobQueue, 'enqueue' | 'getJob' | 'readEvents' | 'follow' | 'cancel' | 'checkHealth' | 'circuitBreakers'>;

/** A job event as the suite expects it: what a handler emitted, or a lifecycle event. */
export interface ContractJobEvent {
  type: string;
  data: unknown;
}

/** One kind of job the contract suite runs every test with. */
export interface JobKind {
  /** What runs the jobs: `handler` or `processor` (used in test titles). */
  readonly name: 'handler' | 'processor';
  /** The root module of an application with `JobQueueModule.forRoot(options)` that runs the contract jobs of this kind. */
  appModule(options: JobQueueModuleOptions): DynamicModule;
  /**
   * The queue this kind's jobs go to in an application started with `extra`; undefined for the
   * default queue (every call then names no queue, as handler users write it).
   */
  queueFor(extra: ContractOptions): string | undefined;
  /**
   * The job event a read event stands for.
   *
   * @throws when the event is none this kind's jobs can produce.
   */
  toJobEvent(event: JobEvent): ContractJobEvent;
}

@Module({})
class HandlerContractAppModule {}

@Module({})
class ProcessorContractAppModule {}

/** `@JobHandler` methods of {@link ContractTestHandlers}; their `emit(type, data)` is the event `type` with `data`. */
export const HANDLER_KIND: JobKind = {
  name: 'handler',
  appModule: (options) => ({
    module: HandlerContractAppModule,
    imports: [JobQueueModule.forRoot(options)],
    providers: [ContractTestHandlers],
  }),
  queueFor: () => undefined,
  toJobEvent: (event) => ({ type: event.type, data: event.data }),
};

const clusterConnections: Cluster[] = [];

/** An ioredis `Cluster` for BullModule, as a team on Redis Cluster passes one (closed by {@link closeTestClusterConnections}). */
function testClusterConnection(nodes: readonly string[]): Cluster {
  const cluster = new Cluster(
    nodes.map((node) => ({ host: new URL(node).hostname, port: Number(new URL(node).port) })),
    { redisOptions: { maxRetriesPerRequest: null } },
  );
  clusterConnections.push(cluster);
  return cluster;
}

/** Closes the Cluster connections handed to BullModule by the processor contract apps. */
export function closeTestClusterConnections(): void {
  for (const cluster of clusterConnections.splice(0)) cluster.disconnect();
}

/**
 * The `@Processor` classes of `test-processors.ts`. On `bullmq` the application is set up as the
 * README tells a `@nestjs/bullmq` team to: `BullModule.workerClass = JobQueueWorker` before
 * `registerQueue`, and `BullModule.forRoot` with the job queue's Redis and key prefix. On `memory`
 * there is no BullModule: the library runs the processors itself. A test's `concurrency` picks the
 * processor queue declared with that concurrency.
 */
export const PROCESSOR_KIND: JobKind = {
  name: 'processor',
  appModule: (options) => {
    const bull: DynamicModule[] = [];
    if (options.backend === 'bullmq') {
      const { url, prefix, clusterNodes } = options.redis ?? {};
      if ((!url && !clusterNodes) || !prefix) {
        throw new Error(
          'The processor contract app needs redis.url (or redis.clusterNodes) and redis.prefix to configure BullModule alike',
        );
      }
      BullModule.workerClass = JobQueueWorker;
      bull.push(
        BullModule.forRoot({ connection: clusterNodes ? testClusterConnection(clusterNodes) : { url }, prefix }),
        BullModule.registerQueue(...PROCESSOR_QUEUE_NAMES.map((name) => ({ name }))),
      );
    }
    return { module: ProcessorContractAppModule, imports: [...bull, JobQueueModule.forRoot(options)], providers: CONTRACT_PROCESSORS };
  },
  queueFor: (extra) => processorQueueFor(extra.concurrency),
  toJobEvent: decodeProcessorEvent,
};

/** Every kind, in the order the suite runs them. */
export const JOB_KINDS: readonly JobKind[] = [HANDLER_KIND, PROCESSOR_KIND];

/**
 * `queue` with every call sent to the queue `name` (a call that names a queue keeps it); `queue`
 * itself when `name` is undefined.
 */
export function scopeToQueue(queue: JobQueue, name: string | undefined): ContractQueue {
  if (name === undefined) return queue;
  const scoped = <T extends { queue?: string }>(options: T | undefined): T => ({ ...options, queue: options?.queue ?? name }) as T;
  return {
    enqueue: (jobName, data, options) => queue.enqueue(jobName, data, scoped(options)),
    getJob: (id, options) => queue.getJob(id, scoped(options)),
    readEvents: (id, options) => queue.readEvents(id, scoped(options)),
    follow: (id, options) => queue.follow(id, scoped(options)),
    cancel: (id, options) => queue.cancel(id, scoped(options)),
    checkHealth: () => queue.checkHealth(),
    circuitBreakers: () => queue.circuitBreakers(),
  };
}
