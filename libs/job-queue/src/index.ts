export { JobQueueModule } from './job-queue.module.js';
export {
  JobQueue,
  DEFAULT_QUEUE,
  START_CURSOR,
  MAX_READ_LIMIT,
  MAX_WAIT_MS,
  DEFAULT_HEALTH_TIMEOUT_MS,
  type EnqueueOptions,
  type JobAccessOptions,
  type ReadEventsOptions,
  type FollowOptions,
  type CancelOptions,
} from './contract/job-queue.js';
export { JOB_QUEUE_OPTIONS } from './job-queue.constants.js';
export {
  JOB_QUEUE_BACKENDS,
  type JobQueueBackendName,
  type JobQueueModuleOptions,
  type JobQueueModuleAsyncOptions,
  type ResolvedJobQueueOptions,
} from './options/job-queue-module-options.js';
export { validateJobQueueOptions } from './options/validate-job-queue-options.js';
export { jobQueueOptionsFromEnv, type ConfigReader } from './options/job-queue-options-from-env.js';
export { JobHandler } from './handlers/job-handler.decorator.js';
export { JobQueueTestingModule } from './testing/job-queue-testing.module.js';
export { JobQueueTesting, type JobEndOptions } from './testing/job-queue-testing.js';
export { JobQueueWorker } from './worker/job-queue-worker.js';
export { JobStreamsQueue } from './backends/bullmq/job-streams-queue.js';
export { BridgedJob } from './worker/bridged-job.js';
export { jobStreamsBackend, type JobStreamsBackendOptions } from './backends/bullmq/job-streams-backend.js';
export { bridgeLeaseHolder } from './backends/bullmq/foreign-workers/queue-events-bridge.js';
export { RedisKeys, hashTagOf } from './backends/bullmq/redis-keys.js';
export { migrateJobKeys, type MigrateJobKeysOptions, type MigrateJobKeysSummary } from './backends/bullmq/job-key-migration.js';
export {
  redisClusterClient,
  clusterFailoverOptions,
  type ClusterFailoverOptions,
  type ConnectionTuning,
} from './backends/bullmq/redis-connection.js';
export { bullModuleConnection, bullModuleClusterConnection, type BullModuleConnection } from './backends/bullmq/bull-module-connection.js';
export type { JobContext, JobHandlerFn } from './contract/job-context.js';
export {
  TERMINAL_EVENT_TYPES,
  RESERVED_EVENT_TYPES,
  isTerminalEventType,
  type JobEvent,
  type JobEventPage,
  type TerminalEventType,
} from './contract/job-event.js';
export { isFinalState, type JobInfo, type JobState } from './contract/job-info.js';
export type { QueueBridgeStatus } from './contract/queue-bridge-status.js';
export type { QueueJobCounts } from './contract/queue-job-counts.js';
export type { CancelCause, DeliveryKind } from './metrics/job-queue-meter.js';
export { JOB_TRACER_NAME, JOB_SPAN_ATTRIBUTES } from './tracing/job-tracing.js';
export type { CircuitBreakerOptions, CircuitBreakerState, CircuitBreakerStatus, JobWaitingFor } from './contract/circuit-breaker.js';
export { JobQueueError } from './errors/job-queue.error.js';
export { JobNotFoundError } from './errors/job-not-found.error.js';
export { JobAlreadyFinishedError } from './errors/job-already-finished.error.js';
export { UnknownJobNameError } from './errors/unknown-job-name.error.js';
export { UnknownQueueError } from './errors/unknown-queue.error.js';
export { InvalidCursorError } from './errors/invalid-cursor.error.js';
export { InvalidArgumentError } from './errors/invalid-argument.error.js';
export { InvalidEventError } from './errors/invalid-event.error.js';
export { EventLimitExceededError } from './errors/event-limit-exceeded.error.js';
export { JobQueueUnavailableError } from './errors/job-queue-unavailable.error.js';
export { InvalidJobQueueOptionsError } from './errors/invalid-options.error.js';
export { IncompatibleBullMqError } from './errors/incompatible-bullmq.error.js';
// The HTTP helpers, also importable alone from the `./http` subpath.
export * from './http/index.js';
