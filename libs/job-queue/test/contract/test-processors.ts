import 'reflect-metadata';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import type { JobContext, JobEvent } from 'nestjs-job-streams';
import { ContractTestHandlers, HANDLER_METHODS, JOBS, report, type ContractJobName } from './test-handlers.js';

/**
 * Plain `@nestjs/bullmq` processors that run the contract jobs, so that the contract suite can
 * check processor jobs as it checks `@JobHandler` jobs. They know nothing of the job queue module:
 * they dispatch on `job.name`, report through `job.updateProgress` and `job.log`, take the attempt
 * from `job.attemptsMade`, honour the `AbortSignal` BullMQ (or the memory backend) hands them, and
 * fail by throwing.
 *
 * To do exactly the work of the handlers, a processor runs the {@link ContractTestHandlers} method
 * of the job's name with a context made from its job, whose `emit(type, data)` becomes a processor
 * call (see {@link carryJobEvent}); {@link decodeProcessorEvent} reads such a call back.
 */

/** The queues of the contract processors, by the concurrency their `@Processor` declares. */
export const PROCESSOR_QUEUES = {
  /** Concurrency 10, the default of `@JobHandler` jobs: the queue of every test that sets no concurrency. */
  10: 'contract-processors',
  1: 'contract-processors-c1',
  2: 'contract-processors-c2',
} as const;

/** Every queue of {@link PROCESSOR_QUEUES}. */
export const PROCESSOR_QUEUE_NAMES: readonly string[] = Object.values(PROCESSOR_QUEUES);

/**
 * The queue whose processor runs `concurrency` jobs at once. Processors take their concurrency
 * from their own `@Processor` worker options, never from `JobQueueModule`'s `concurrency`.
 *
 * @throws when no contract processor declares that concurrency.
 */
export function processorQueueFor(concurrency = 10): string {
  const queue = (PROCESSOR_QUEUES as Record<number, string>)[concurrency];
  if (queue === undefined) throw new Error(`No contract processor queue has concurrency ${concurrency}`);
  return queue;
}

/** Jobs only the processors run: they exercise what only processor calls can do. */
export const PROCESSOR_JOBS = {
  /**
   * Makes the calls listed in {@link UNCARRIABLE_CALLS} (data `{ key, maxEventBytes }`), reports
   * each call's {@link ProcessorCallOutcome} under `key`, and returns `{ tried }`.
   */
  uncarriableCalls: 'contract.uncarriable-calls',
} as const;

/**
 * Job event types a contract processor carries as `job.log` lines (the JSON text of
 * `{ type, data }`); every other type goes through `job.updateProgress({ type, data })`. Both
 * kinds of call are thus part of the suite: the gated job logs `waiting` and reports `opened` as
 * progress, the large job reports steps as progress and logs its tokens.
 */
export const LOG_CARRIED_TYPES: ReadonlySet<string> = new Set(['waiting', 'before', 'token']);

/** The event types the library itself writes, which a processor call never stands for. */
const LIFECYCLE_TYPES: ReadonlySet<string> = new Set(['started', 'completed', 'failed', 'cancelled']);

/** Makes the processor call that carries the job event `type` with `data`. */
function carryJobEvent(job: Job, type: string, data: unknown): Promise<void> {
  const event = { type, data: data === undefined ? null : data };
  if (LOG_CARRIED_TYPES.has(type)) return job.log(JSON.stringify(event)).then(() => undefined);
  return job.updateProgress(event);
}

function isPlainRecord(value: unknown, keys: string[]): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    JSON.stringify(Object.keys(value).sort()) === JSON.stringify([...keys].sort())
  );
}

/** `value` as a carried job event `{ type, data }`, or undefined when it is not one. */
function asCarriedEvent(value: unknown): { type: string; data: unknown } | undefined {
  if (!isPlainRecord(value, ['data', 'type']) || typeof value.type !== 'string' || LIFECYCLE_TYPES.has(value.type)) return undefined;
  return { type: value.type, data: value.data };
}

/**
 * The job event a processor job's stream event stands for: lifecycle events as they are, a
 * `progress` or `log` event as the job event the contract processor carried with it (the inverse of
 * {@link carryJobEvent}).
 *
 * @throws for any other event, or a job event that came through the wrong kind of call, so a
 * stream that is not exactly what the processor's calls should give fails the test.
 */
export function decodeProcessorEvent(event: JobEvent): { type: string; data: unknown } {
  if (LIFECYCLE_TYPES.has(event.type)) return { type: event.type, data: event.data };
  let carried: { type: string; data: unknown } | undefined;
  if (event.type === 'progress') {
    carried = asCarriedEvent(event.data);
    if (carried && LOG_CARRIED_TYPES.has(carried.type)) carried = undefined;
  } else if (event.type === 'log' && isPlainRecord(event.data, ['message']) && typeof event.data.message === 'string') {
    try {
      carried = asCarriedEvent(JSON.parse(event.data.message));
    } catch {
      carried = undefined;
    }
    if (carried && !LOG_CARRIED_TYPES.has(carried.type)) carried = undefined;
  }
  if (!carried) throw new Error(`Not an event a contract processor's call gives: ${JSON.stringify(event)}`);
  return carried;
}

/** How one processor call of {@link PROCESSOR_JOBS.uncarriableCalls} ended. */
export interface ProcessorCallOutcome {
  case: string;
  outcome: 'resolved' | 'rejected';
  /** The name of the error the call rejected with. */
  error?: string;
}

/** What {@link PROCESSOR_JOBS.uncarriableCalls} reports: one outcome per case of {@link UNCARRIABLE_CALLS}, in order. */
export type UncarriableCallsReport = ProcessorCallOutcome[];

/** The length of `{"message":""}`, what a `log` event's data adds to the line. */
const LOG_EVENT_OVERHEAD = JSON.stringify({ message: '' }).length;

/**
 * The calls of {@link PROCESSOR_JOBS.uncarriableCalls}, in order, for a job queue whose
 * `maxEventBytes` is `max`: values the stream cannot carry (too large, or taken by BullMQ but not
 * JSON), values BullMQ refuses (JSON.stringify throws), values that look like lifecycle events,
 * and the largest values that still fit.
 */
export const UNCARRIABLE_CALLS: ReadonlyArray<readonly [string, (job: Job, max: number) => Promise<unknown>]> = [
  // JSON adds two quotes: one byte over the limit.
  ['ascii progress over maxEventBytes', (job, max) => job.updateProgress('x'.repeat(max - 1))],
  // Few UTF-16 units but two UTF-8 bytes each: the limit is in bytes.
  ['utf-8 progress over maxEventBytes', (job, max) => job.updateProgress('é'.repeat(Math.ceil(max / 2)))],
  ['log line over maxEventBytes', (job, max) => job.log('x'.repeat(max - LOG_EVENT_OVERHEAD + 1))],
  ['bigint progress', (job) => job.updateProgress({ n: 10n })],
  ['circular progress', (job) => job.updateProgress(circularValue())],
  // A function is an `object` to BullMQ's types, and BullMQ takes it (JSON.stringify gives undefined).
  ['function progress', (job) => job.updateProgress(() => 1)],
  ['progress that looks like a terminal event', (job) => job.updateProgress({ type: 'completed', data: { result: 'forged' } })],
  ['log line naming a terminal event', (job) => job.log('cancelled')],
  ['progress at maxEventBytes', (job, max) => job.updateProgress('x'.repeat(max - 2))],
  ['log line at maxEventBytes', (job, max) => job.log('y'.repeat(max - LOG_EVENT_OVERHEAD))],
];

function circularValue(): Record<string, unknown> {
  const circular: Record<string, unknown> = { name: 'loop' };
  circular.self = circular;
  return circular;
}

async function uncarriableCalls(job: Job<{ key: string; maxEventBytes: number }>): Promise<{ tried: number }> {
  const outcomes: UncarriableCallsReport = [];
  for (const [name, call] of UNCARRIABLE_CALLS) {
    try {
      await call(job, job.data.maxEventBytes);
      outcomes.push({ case: name, outcome: 'resolved' });
    } catch (error) {
      outcomes.push({ case: name, outcome: 'rejected', error: (error as Error)?.name ?? typeof error });
    }
  }
  report(job.data.key, outcomes);
  return { tried: UNCARRIABLE_CALLS.length };
}

/** Job names the handlers have but the processors do not run: `emit`'s validation has no processor call to check. */
const HANDLER_ONLY_JOBS: ReadonlySet<string> = new Set([JOBS.invalidEmits]);

/** The contract processor's `process`, shared by the processors of every contract queue. */
abstract class ContractProcessor extends WorkerHost {
  private readonly handlers = new ContractTestHandlers();

  async process(job: Job, _token?: string, signal?: AbortSignal): Promise<unknown> {
    if (!signal) throw new Error('The processor got no AbortSignal (its third parameter)');
    if (job.name === PROCESSOR_JOBS.uncarriableCalls) return uncarriableCalls(job as Job<{ key: string; maxEventBytes: number }>);
    if (!Object.hasOwn(HANDLER_METHODS, job.name) || HANDLER_ONLY_JOBS.has(job.name)) {
      throw new Error(`No contract processor job is named "${job.name}"`);
    }
    const context: JobContext = {
      id: job.id!,
      name: job.name,
      data: job.data,
      attempt: job.attemptsMade + 1,
      signal,
      emit: (type, data) => carryJobEvent(job, type, data),
    };
    const method = this.handlers[HANDLER_METHODS[job.name as ContractJobName]] as (context: JobContext) => unknown;
    return method.call(this.handlers, context);
  }
}

@Processor(PROCESSOR_QUEUES[10], { concurrency: 10 })
export class SharedContractProcessor extends ContractProcessor {}

@Processor(PROCESSOR_QUEUES[1], { concurrency: 1 })
export class SerialContractProcessor extends ContractProcessor {}

@Processor(PROCESSOR_QUEUES[2], { concurrency: 2 })
export class PairContractProcessor extends ContractProcessor {}

/** The providers of every contract processor. */
export const CONTRACT_PROCESSORS = [SharedContractProcessor, SerialContractProcessor, PairContractProcessor];
