import 'reflect-metadata';
import { Injectable } from '@nestjs/common';
import { EventLimitExceededError, InvalidEventError, JobHandler, type JobContext } from 'nestjs-job-streams';

/**
 * Job handlers used by the contract suite, plus the in-process coordination they share with the
 * tests. Job data goes through JSON on every backend, so a handler never receives a live object
 * from a test: it receives a key (`gate`, `key`) and looks the shared state up in the module-level
 * maps below. This only works while the handlers run in the test's own process, which is what
 * every contract harness does (a separate worker process would need another channel).
 */

/** Job names registered by {@link ContractTestHandlers}. */
export const JOBS = {
  /** Returns `{ id, name, attempt, data }` as the handler saw them. */
  echo: 'contract.echo',
  /** Emits `count` events `type` (default `tick`) `{ index }`, awaiting each; returns `{ count }`. */
  emit: 'contract.emit',
  /** The demo build shape: `steps` x (`step` `{ index, total }` + `tokensPerStep` `token` events). */
  steps: 'contract.steps',
  /** Emits `before` `{ attempt }`, then throws `Error(message)`. */
  fail: 'contract.fail',
  /** Emits `try` `{ attempt }`; throws on attempt 1, returns `{ attempt }` afterwards. */
  failFirst: 'contract.fail-first',
  /** On attempt 1 emits `count` `tick` events; every attempt then throws. */
  emitThenFail: 'contract.emit-then-fail',
  /** Emits `waiting`, then blocks until its gate opens (emits `opened`) or its signal fires. */
  gated: 'contract.gated',
  /** Appends `label` to the run log `key` and returns `{ label }`. */
  record: 'contract.record',
  /** Tries invalid emits, reporting each outcome as a `rejected` event. */
  invalidEmits: 'contract.invalid-emits',
  /** Returns a value that JSON cannot represent (`bigint`, `circular`, `function`) or `undefined`. */
  badResult: 'contract.bad-result',
  /**
   * Emits `count` `tick` events `{ index }`, swallowing emit errors; with `gate`, then waits for
   * the gate or the signal. Reports what it saw under `key` and returns normally.
   */
  flood: 'contract.flood',
  /**
   * Guarded by a circuit breaker in the breaker tests: emits `ran` `{ attempt }`; with `gate`, waits
   * for it (or the signal); then throws `Error('breaker test failure')` when `fail`, else returns `{ ran: true }`.
   */
  breaker: 'contract.breaker',
} as const;

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

let sequence = 0;

/** A key unique in this process, for run logs, reports and groups. */
export function uniqueKey(prefix: string): string {
  return `${prefix}-${process.pid}-${++sequence}`;
}

/** What a gated handler saw, reported when it is about to return or throw. */
export interface GatedReport {
  attempt: number;
  /** True when the job's signal fired before the gate opened (cancel, event cap, shutdown). */
  aborted: boolean;
  /** After an abort the handler tries one more emit: `accepted` or the name of the error thrown. */
  lateEmit?: string;
}

interface GateRecord {
  entered: Deferred<number>;
  opened: Deferred<void>;
  isOpen: boolean;
  finished: Deferred<GatedReport>;
}

const gates = new Map<string, GateRecord>();

/** A gate a {@link JOBS.gated} job waits on; pass `gate.key` in the job data. */
export interface Gate {
  readonly key: string;
  /** Resolves with the attempt number once the handler emitted `waiting` and waits on the gate. */
  readonly entered: Promise<number>;
  /** Resolves when the handler is done (returned or threw), with what it saw. */
  readonly finished: Promise<GatedReport>;
  open(): void;
}

export function createGate(): Gate {
  const key = uniqueKey('gate');
  const record: GateRecord = { entered: deferred(), opened: deferred(), isOpen: false, finished: deferred() };
  gates.set(key, record);
  return {
    key,
    entered: record.entered.promise,
    finished: record.finished.promise,
    open: () => openGate(record),
  };
}

function openGate(record: GateRecord): void {
  record.isOpen = true;
  record.opened.resolve();
}

/**
 * Opens every gate and forgets them, so no handler stays blocked after a test (a backend may
 * wait for running handlers on close). A handler whose gate is unknown does not block.
 */
export function openAllGates(): void {
  for (const record of gates.values()) openGate(record);
  gates.clear();
}

function waitForGateOrAbort(record: GateRecord | undefined, signal: AbortSignal): Promise<'opened' | 'aborted'> {
  if (signal.aborted) return Promise.resolve('aborted');
  if (!record || record.isOpen) return Promise.resolve('opened');
  return new Promise((resolve) => {
    const onAbort = (): void => resolve('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
    void record.opened.promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve('opened');
    });
  });
}

/** How many gated handlers of a group ran at once. */
export interface GroupActivity {
  active: number;
  maxActive: number;
  /** Job ids in the order their handlers started. */
  started: string[];
}

const groups = new Map<string, GroupActivity>();

export function groupActivity(group: string): GroupActivity {
  let activity = groups.get(group);
  if (!activity) groups.set(group, (activity = { active: 0, maxActive: 0, started: [] }));
  return activity;
}

const runLogs = new Map<string, string[]>();

/** Labels recorded by {@link JOBS.record} jobs under `key`, in the order their handlers ran. */
export function runLog(key: string): string[] {
  let log = runLogs.get(key);
  if (!log) runLogs.set(key, (log = []));
  return log;
}

const reports = new Map<string, Deferred<unknown>>();

function reportSlot(key: string): Deferred<unknown> {
  let slot = reports.get(key);
  if (!slot) reports.set(key, (slot = deferred()));
  return slot;
}

/** Resolves with what a handler reported under `key`. */
export function reportOf<T>(key: string): Promise<T> {
  return reportSlot(key).promise as Promise<T>;
}

/** Makes `value` what {@link reportOf} `key` resolves with (the first report under a key wins). */
export function report(key: string, value: unknown): void {
  reportSlot(key).resolve(value);
}

/** An error as a handler saw it, in plain data. */
export interface SeenError {
  name: string;
  message: string;
  invalidEvent: boolean;
  eventLimit: boolean;
}

function seen(error: unknown): SeenError {
  const e = error as Error;
  return {
    name: e?.name ?? typeof error,
    message: e?.message ?? String(error),
    invalidEvent: error instanceof InvalidEventError,
    eventLimit: error instanceof EventLimitExceededError,
  };
}

/** What {@link JOBS.flood} reports. */
export interface FloodReport {
  attempt: number;
  /** The first error an emit threw, if any. */
  error?: SeenError;
  /** Emits that returned before that error. */
  emittedBeforeError: number;
  /** Whether the signal had fired when that error was thrown. */
  abortedAtError?: boolean;
  /** Whether the signal had fired when the handler finished. */
  signalAborted: boolean;
}

/**
 * How an invalid emit behaved: it must throw synchronously, before returning a promise. Kept
 * small because it is itself emitted under a small `maxEventBytes`.
 */
export interface RejectedEmit {
  case: string;
  outcome: 'threw' | 'rejected' | 'accepted';
  /** The error's name, when there was one. */
  error?: string;
  invalidEvent: boolean;
}

@Injectable()
export class ContractTestHandlers {
  @JobHandler(JOBS.echo)
  echo(ctx: JobContext): unknown {
    return { id: ctx.id, name: ctx.name, attempt: ctx.attempt, data: ctx.data };
  }

  @JobHandler(JOBS.emit)
  async emit(ctx: JobContext<{ count: number; type?: string }>): Promise<{ count: number }> {
    for (let index = 0; index < ctx.data.count; index++) await ctx.emit(ctx.data.type ?? 'tick', { index });
    return { count: ctx.data.count };
  }

  @JobHandler(JOBS.steps)
  async steps(ctx: JobContext<{ steps: number; tokensPerStep: number }>): Promise<{ steps: number }> {
    const { steps, tokensPerStep } = ctx.data;
    // Not awaiting each emit lets a batching backend batch; ordering is by call order regardless.
    let pending: Array<Promise<void>> = [];
    for (let index = 1; index <= steps; index++) {
      pending.push(ctx.emit('step', { index, total: steps }));
      for (let token = 1; token <= tokensPerStep; token++) {
        pending.push(ctx.emit('token', { step: index, index: token, text: `token ${token} of step ${index}` }));
      }
      if (pending.length >= 500) {
        await Promise.all(pending);
        pending = [];
      }
    }
    await Promise.all(pending);
    return { steps };
  }

  @JobHandler(JOBS.fail)
  async fail(ctx: JobContext<{ message: string }>): Promise<never> {
    await ctx.emit('before', { attempt: ctx.attempt });
    throw new Error(ctx.data.message);
  }

  @JobHandler(JOBS.failFirst)
  async failFirst(ctx: JobContext): Promise<{ attempt: number }> {
    await ctx.emit('try', { attempt: ctx.attempt });
    if (ctx.attempt === 1) throw new Error('first attempt fails');
    return { attempt: ctx.attempt };
  }

  @JobHandler(JOBS.emitThenFail)
  async emitThenFail(ctx: JobContext<{ count: number }>): Promise<never> {
    if (ctx.attempt === 1) for (let index = 0; index < ctx.data.count; index++) await ctx.emit('tick', { index });
    throw new Error(`attempt ${ctx.attempt} fails`);
  }

  @JobHandler(JOBS.gated)
  async gated(ctx: JobContext<{ gate: string; group?: string }>): Promise<{ opened: true }> {
    const gate = gates.get(ctx.data.gate);
    const activity = ctx.data.group === undefined ? undefined : groupActivity(ctx.data.group);
    if (activity) {
      activity.active++;
      activity.maxActive = Math.max(activity.maxActive, activity.active);
      activity.started.push(ctx.id);
    }
    try {
      await ctx.emit('waiting', { attempt: ctx.attempt });
      gate?.entered.resolve(ctx.attempt);
      if ((await waitForGateOrAbort(gate, ctx.signal)) === 'aborted') {
        let lateEmit: string;
        try {
          await ctx.emit('late', { attempt: ctx.attempt });
          lateEmit = 'accepted';
        } catch (error) {
          lateEmit = seen(error).name;
        }
        gate?.finished.resolve({ attempt: ctx.attempt, aborted: true, lateEmit });
        throw new Error('aborted while waiting on the gate');
      }
      await ctx.emit('opened', { attempt: ctx.attempt });
      gate?.finished.resolve({ attempt: ctx.attempt, aborted: false });
      return { opened: true };
    } finally {
      if (activity) activity.active--;
    }
  }

  @JobHandler(JOBS.breaker)
  async breaker(ctx: JobContext<{ fail?: boolean; gate?: string }>): Promise<{ ran: true }> {
    await ctx.emit('ran', { attempt: ctx.attempt });
    if (ctx.data.gate !== undefined && (await waitForGateOrAbort(gates.get(ctx.data.gate), ctx.signal)) === 'aborted') {
      throw new Error('aborted while waiting on the gate');
    }
    if (ctx.data.fail) throw new Error('breaker test failure');
    return { ran: true };
  }

  @JobHandler(JOBS.record)
  record(ctx: JobContext<{ key: string; label: string }>): { label: string } {
    runLog(ctx.data.key).push(ctx.data.label);
    return { label: ctx.data.label };
  }

  @JobHandler(JOBS.invalidEmits)
  async invalidEmits(ctx: JobContext<{ maxEventBytes: number }>): Promise<{ tried: number }> {
    const max = ctx.data.maxEventBytes;
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    const cases: Array<[string, () => Promise<void>]> = [
      ['reserved type completed', () => ctx.emit('completed', { result: 'forged' })],
      ['reserved type started', () => ctx.emit('started', { attempt: 99 })],
      ['reserved type failed', () => ctx.emit('failed', { error: { message: 'forged' } })],
      ['reserved type cancelled', () => ctx.emit('cancelled', { reason: 'forged' })],
      ['empty type', () => ctx.emit('', { n: 1 })],
      ['type with a space', () => ctx.emit('has space', { n: 1 })],
      ['bigint data', () => ctx.emit('data', { n: 10n })],
      ['circular data', () => ctx.emit('data', circular)],
      ['function data', () => ctx.emit('data', () => 1)],
      // JSON adds two quotes: one byte over the limit.
      ['ascii data over maxEventBytes', () => ctx.emit('data', 'x'.repeat(max - 1))],
      // Few UTF-16 units but two UTF-8 bytes each: the limit is in bytes.
      ['utf-8 data over maxEventBytes', () => ctx.emit('data', 'é'.repeat(Math.ceil(max / 2)))],
    ];
    for (const [name, attempt] of cases) {
      const report: RejectedEmit = { case: name, outcome: 'accepted', invalidEvent: false };
      const note = (outcome: RejectedEmit['outcome'], error: unknown): void => {
        report.outcome = outcome;
        report.error = seen(error).name;
        report.invalidEvent = error instanceof InvalidEventError;
      };
      try {
        const promise = attempt();
        try {
          await promise;
        } catch (error) {
          note('rejected', error);
        }
      } catch (error) {
        note('threw', error);
      }
      await ctx.emit('rejected', report);
    }
    // Exactly at the limit is allowed.
    await ctx.emit('data', 'x'.repeat(max - 2));
    await ctx.emit('last', { ok: true });
    return { tried: cases.length };
  }

  @JobHandler(JOBS.badResult)
  badResult(ctx: JobContext<{ kind: 'bigint' | 'circular' | 'function' | 'undefined' }>): unknown {
    if (ctx.data.kind === 'bigint') return { big: 10n };
    if (ctx.data.kind === 'function') return () => 1; // no JSON text at all, and no error
    if (ctx.data.kind === 'circular') {
      const result: Record<string, unknown> = {};
      result.self = result;
      return result;
    }
    return undefined;
  }

  @JobHandler(JOBS.flood)
  async flood(ctx: JobContext<{ key: string; count: number; gate?: string }>): Promise<{ count: number }> {
    const report: FloodReport = { attempt: ctx.attempt, emittedBeforeError: 0, signalAborted: false };
    for (let index = 0; index < ctx.data.count; index++) {
      try {
        await ctx.emit('tick', { index });
        if (!report.error) report.emittedBeforeError++;
      } catch (error) {
        if (!report.error) {
          report.error = seen(error);
          report.abortedAtError = ctx.signal.aborted;
        }
      }
    }
    if (ctx.data.gate !== undefined) await waitForGateOrAbort(gates.get(ctx.data.gate), ctx.signal);
    report.signalAborted = ctx.signal.aborted;
    reportSlot(ctx.data.key).resolve(report);
    return { count: ctx.data.count };
  }
}

/** A job name of {@link JOBS}. */
export type ContractJobName = (typeof JOBS)[keyof typeof JOBS];

/**
 * The method of {@link ContractTestHandlers} registered for each job name. The contract
 * processors (`test-processors.ts`) run the same methods with a context made from their BullMQ
 * job, so a handler job and a processor job of one name do exactly the same work.
 */
export const HANDLER_METHODS = {
  [JOBS.echo]: 'echo',
  [JOBS.emit]: 'emit',
  [JOBS.steps]: 'steps',
  [JOBS.fail]: 'fail',
  [JOBS.failFirst]: 'failFirst',
  [JOBS.emitThenFail]: 'emitThenFail',
  [JOBS.gated]: 'gated',
  [JOBS.record]: 'record',
  [JOBS.invalidEmits]: 'invalidEmits',
  [JOBS.badResult]: 'badResult',
  [JOBS.flood]: 'flood',
  [JOBS.breaker]: 'breaker',
} as const satisfies Record<ContractJobName, keyof ContractTestHandlers>;
