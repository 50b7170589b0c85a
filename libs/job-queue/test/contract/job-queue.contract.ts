import 'reflect-metadata';
import { setTimeout as delay } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { NestFactory } from '@nestjs/core';
import {
  InvalidArgumentError,
  InvalidCursorError,
  JobAlreadyFinishedError,
  JobNotFoundError,
  JobQueue,
  START_CURSOR,
  UnknownJobNameError,
  UnknownQueueError,
  type EnqueueOptions,
  type JobEvent,
  type JobQueueModuleOptions,
} from 'nestjs-job-streams';
import {
  HANDLER_KIND,
  JOB_KINDS,
  scopeToQueue,
  type ContractJobEvent,
  type ContractOptions,
  type ContractQueue,
  type JobKind,
} from './job-kinds.js';
import {
  JOBS,
  createGate,
  groupActivity,
  openAllGates,
  reportOf,
  runLog,
  uniqueKey,
  type FloodReport,
  type RejectedEmit,
} from './test-handlers.js';
import { PROCESSOR_JOBS, PROCESSOR_QUEUE_NAMES, UNCARRIABLE_CALLS, type UncarriableCallsReport } from './test-processors.js';

/**
 * The contract every {@link JobQueue} backend keeps, written once. A backend runs it by calling
 * {@link describeJobQueueContract} with a harness that starts applications of that backend. Every
 * test runs for each kind of job ({@link JOB_KINDS}): `@JobHandler` jobs, and jobs of plain
 * `@nestjs/bullmq` processors. A test with no meaning for one kind has that kind's analogue next to it.
 *
 * The suite treats cursors as opaque: it only passes back `'0'` (the documented start) and ids it
 * received, and compares ids only by the order the queue returned them in.
 */

export type { ContractOptions } from './job-kinds.js';

/** One running application: its queue and how to stop it. */
export interface ContractApp {
  queue: JobQueue;
  close(): Promise<void>;
}

/** How the suite gets applications of one backend. */
export interface ContractHarness {
  /** Once before the suite, e.g. to start redis-server. */
  setup?(): Promise<void>;
  /** Once after the suite. */
  teardown?(): Promise<void>;
  /**
   * Starts an application whose JobQueueModule has the backend's options plus `extra`, and which
   * runs the contract jobs of `kind` (default: the `ContractTestHandlers`). Every call must give
   * an isolated queue (for Redis: a fresh key prefix), because tests change options such as
   * concurrency and retention.
   */
  createApp(extra?: ContractOptions, kind?: JobKind): Promise<ContractApp>;
}

/**
 * Starts a Nest application context with `JobQueueModule.forRoot(options)` and what runs the
 * contract jobs of `kind` (default: the test handlers).
 */
export async function createContractApp(options: JobQueueModuleOptions, kind: JobKind = HANDLER_KIND): Promise<ContractApp> {
  const app = await NestFactory.createApplicationContext(kind.appModule(options), { logger: false, abortOnError: false });
  return { queue: app.get(JobQueue), close: () => app.close() };
}

/**
 * A harness that starts one Nest application per call with `baseOptions()` (called each time, so
 * it can hand out a fresh Redis prefix) merged with the test's extra options.
 */
export function nestContractHarness(
  baseOptions: () => JobQueueModuleOptions,
  hooks: Pick<ContractHarness, 'setup' | 'teardown'> = {},
): ContractHarness {
  return { ...hooks, createApp: (extra = {}, kind) => createContractApp({ ...baseOptions(), ...extra }, kind) };
}

const OWNER = 'alice';
const STRANGER = 'mallory';
const LONG_WAIT_MS = 10_000;

type Simplified = [type: string, data: unknown];

/** Events as `[type, data]`, exactly as read (without a kind's reading). */
function simplifyRaw(events: JobEvent[]): Simplified[] {
  return events.map((event) => [event.type, event.data]);
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/**
 * Checks what every finished stream must look like: well-formed events, unique ids, `started`
 * attempts counting up from 1, and exactly one terminal event, last.
 */
function expectWellFormedStream(events: JobEvent[]): void {
  for (const event of events) {
    expect(Object.keys(event).sort()).toEqual(['data', 'id', 'ts', 'type']);
    expect(typeof event.id).toBe('string');
    expect(event.id.length).toBeGreaterThan(0);
    expect(typeof event.type).toBe('string');
    expect(Number.isFinite(event.ts)).toBe(true);
  }
  expect(new Set(events.map((event) => event.id)).size).toBe(events.length);
  expect(events.filter((event) => TERMINAL.has(event.type))).toHaveLength(1);
  expect(TERMINAL.has(events[events.length - 1].type)).toBe(true);
  const attempts = events.filter((event) => event.type === 'started').map((event) => (event.data as { attempt: number }).attempt);
  expect(attempts).toEqual(attempts.map((_, index) => index + 1));
}

/** Resolves true when `promise` settles within `ms` (used only to assert that something is still pending). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await delay(ms);
  return settled;
}

/** `promise`, or a clear failure when it takes longer than `ms` (instead of the test's timeout). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up waiting ${ms} ms for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** A pseudo-random generator with a fixed seed, so a failure can be replayed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Runs the contract against the applications `harness` starts, once for each kind of job. */
export function describeJobQueueContract(label: string, harness: ContractHarness): void {
  describe(`JobQueue contract (${label})`, () => {
    beforeAll(async () => {
      await harness.setup?.();
    });

    afterAll(async () => {
      openAllGates();
      await harness.teardown?.();
    });

    for (const kind of JOB_KINDS) describeContractFor(kind, harness);
  });
}

/** Every test of the contract, for the jobs of `kind`. */
function describeContractFor(kind: JobKind, harness: ContractHarness): void {
  describe(`${kind.name} jobs`, () => {
    let shared: ContractApp | undefined;
    let queue: ContractQueue;

    beforeAll(async () => {
      shared = await harness.createApp({}, kind);
      queue = scopeToQueue(shared.queue, kind.queueFor({}));
    });

    afterEach(() => openAllGates());

    afterAll(async () => {
      openAllGates();
      await shared?.close();
    });

    /** The job events the read events stand for, as `[type, data]`. */
    function simplify(events: JobEvent[]): Simplified[] {
      return events.map((event) => {
        const { type, data } = kind.toJobEvent(event);
        return [type, data];
      });
    }

    /** The types of the job events the read events stand for. */
    function typesOf(events: JobEvent[]): string[] {
      return events.map((event) => kind.toJobEvent(event).type);
    }

    /** Runs `body` against a fresh application with extra options, and always stops it. */
    async function withApp(extra: ContractOptions, body: (queue: ContractQueue) => Promise<void>): Promise<void> {
      const app = await harness.createApp(extra, kind);
      try {
        await body(scopeToQueue(app.queue, kind.queueFor(extra)));
      } finally {
        openAllGates();
        await app.close();
      }
    }

    function enqueue(q: ContractQueue, name: string, data: unknown, options: Partial<EnqueueOptions> = {}) {
      return q.enqueue(name, data, { owner: OWNER, ...options });
    }

    /** Every event after `after` up to the terminal one, by long-polled readEvents pages. */
    async function readAll(q: ContractQueue, id: string, after?: string, limit?: number): Promise<JobEvent[]> {
      const events: JobEvent[] = [];
      let cursor = after;
      for (let page = 0; page < 100_000; page++) {
        const result = await q.readEvents(id, { owner: OWNER, after: cursor, limit, waitMs: 5_000 });
        events.push(...result.events);
        if (result.done) return events;
        cursor = result.next;
      }
      throw new Error('readAll: the stream never ended');
    }

    /** Long-polls until an event whose job event matches `predicate` arrives; returns everything read and the cursor after it. */
    async function readUntil(
      q: ContractQueue,
      id: string,
      predicate: (event: ContractJobEvent) => boolean,
    ): Promise<{ events: JobEvent[]; next: string }> {
      const events: JobEvent[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 100; page++) {
        const result = await q.readEvents(id, { owner: OWNER, after: cursor, waitMs: 5_000 });
        events.push(...result.events);
        if (result.events.some((event) => predicate(kind.toJobEvent(event)))) return { events, next: result.next };
        if (result.done) throw new Error(`the job ended without the awaited event: ${typesOf(events).join(', ')}`);
        cursor = result.next;
      }
      throw new Error('readUntil: the awaited event never came');
    }

    async function follow(q: ContractQueue, id: string, after?: string): Promise<JobEvent[]> {
      const events: JobEvent[] = [];
      for await (const event of q.follow(id, { owner: OWNER, after })) events.push(event);
      return events;
    }

    /** Polls (bounded) until the job is unknown; returns when that was first seen. */
    async function waitUntilGone(q: ContractQueue, id: string, withinMs: number): Promise<number> {
      const deadline = Date.now() + withinMs;
      while (Date.now() < deadline) {
        try {
          await q.getJob(id, { owner: OWNER });
        } catch (error) {
          expect(error).toBeInstanceOf(JobNotFoundError);
          return Date.now();
        }
        await delay(20);
      }
      throw new Error(`job ${id} was still known after ${withinMs} ms`);
    }

    /** A running gated job whose `waiting` event was read; `next` is the cursor after it. */
    async function startGatedJob(q: ContractQueue, extraData: Record<string, unknown> = {}) {
      const gate = createGate();
      const info = await enqueue(q, JOBS.gated, { gate: gate.key, ...extraData });
      const { events, next } = await readUntil(q, info.id, (event) => event.type === 'waiting');
      return { gate, id: info.id, events, next };
    }

    describe('enqueue and job state', () => {
      it('enqueue returns the new job, queued or already running', async () => {
        const before = Date.now();
        const first = await enqueue(queue, JOBS.emit, { count: 0 });
        const second = await enqueue(queue, JOBS.emit, { count: 0 }, { attempts: 3 });
        const after = Date.now();
        for (const info of [first, second]) {
          expect(typeof info.id).toBe('string');
          expect(info.id.length).toBeGreaterThan(0);
          expect(info.name).toBe(JOBS.emit);
          expect(['queued', 'running']).toContain(info.state);
          expect([0, 1]).toContain(info.attempt);
          expect(info.createdAt).toBeGreaterThanOrEqual(before - 1_000);
          expect(info.createdAt).toBeLessThanOrEqual(after + 1_000);
          expect(info.result).toBeUndefined();
          expect(info.error).toBeUndefined();
        }
        expect(first.maxAttempts).toBe(1);
        expect(second.maxAttempts).toBe(3);
        expect(first.id).not.toBe(second.id);
        await readAll(queue, first.id);
        await readAll(queue, second.id);
      });

      it(`the ${kind.name} gets the id, name, attempt and a JSON copy of the data; its return value is the result`, async () => {
        const data = { n: 1, text: 'héllo', nested: { list: [1, 2, { deep: true }] }, when: new Date(0), dropped: undefined };
        const info = await enqueue(queue, JOBS.echo, data);
        data.nested.list.push(3); // changing the caller's object after enqueue must not reach the job
        const expected = {
          id: info.id,
          name: JOBS.echo,
          attempt: 1,
          data: { n: 1, text: 'héllo', nested: { list: [1, 2, { deep: true }] }, when: '1970-01-01T00:00:00.000Z' },
        };
        const events = await readAll(queue, info.id);
        expect(simplify(events)).toEqual([
          ['started', { attempt: 1 }],
          ['completed', { result: expected }],
        ]);
        const job = await queue.getJob(info.id, { owner: OWNER });
        expect(job).toMatchObject({ id: info.id, name: JOBS.echo, state: 'completed', attempt: 1, maxAttempts: 1, result: expected });
        expect(job.error).toBeUndefined();
        expect(job.startedAt).toBeGreaterThanOrEqual(job.createdAt);
        expect(job.finishedAt).toBeGreaterThanOrEqual(job.startedAt!);
      });

      it('a running job reports state running and attempt 1', async () => {
        const { gate, id } = await startGatedJob(queue);
        const job = await queue.getJob(id, { owner: OWNER });
        expect(job).toMatchObject({ id, state: 'running', attempt: 1 });
        expect(job.startedAt).toEqual(expect.any(Number));
        expect(job.finishedAt).toBeUndefined();
        gate.open();
        await readAll(queue, id);
        expect((await queue.getJob(id, { owner: OWNER })).state).toBe('completed');
      });

      if (kind.name === 'handler') {
        it('an unknown job name is rejected with UnknownJobNameError naming it', async () => {
          const error = await rejectionOf(enqueue(queue, 'contract.no-such-handler', {}));
          expect(error).toBeInstanceOf(UnknownJobNameError);
          expect((error as UnknownJobNameError).jobName).toBe('contract.no-such-handler');
          expect((error as Error).message).toContain('contract.no-such-handler');
        });
      } else {
        // A processor dispatches on job names itself; what the queue knows is which queues it serves.
        it('a queue outside `queues` is rejected with UnknownQueueError naming it; the served queues take jobs', async () => {
          await withApp({ queues: PROCESSOR_QUEUE_NAMES }, async (q) => {
            const error = await rejectionOf(enqueue(q, JOBS.echo, {}, { queue: 'contract-no-such-queue' }));
            expect(error).toBeInstanceOf(UnknownQueueError);
            expect((error as UnknownQueueError).queueName).toBe('contract-no-such-queue');
            expect((error as Error).message).toContain('contract-no-such-queue');
            const info = await enqueue(q, JOBS.echo, {});
            expect(typesOf(await readAll(q, info.id))).toEqual(['started', 'completed']);
          });
        });
      }

      it('invalid enqueue arguments are rejected with InvalidArgumentError', async () => {
        const bad: Array<[unknown, Partial<EnqueueOptions>]> = [
          [{}, { owner: '' }],
          [{}, { owner: 42 as unknown as string }],
          [{}, { attempts: 0 }],
          [{}, { attempts: 101 }],
          [{}, { attempts: 1.5 }],
          [{}, { backoffMs: -1 }],
          [{}, { backoffMs: 86_400_001 }],
          [{}, { backoffMs: 0.5 }],
          [{}, { priority: 0 }],
          [{}, { priority: 2 ** 21 }],
          [{ n: 10n }, {}],
        ];
        for (const [data, options] of bad) {
          await expect(enqueue(queue, JOBS.echo, data, options)).rejects.toBeInstanceOf(InvalidArgumentError);
        }
      });

      it('a job enqueued without an owner (system code) runs, and only system access reaches it', async () => {
        const info = await enqueue(queue, JOBS.echo, { n: 1 }, { owner: undefined });
        const events: JobEvent[] = [];
        for await (const event of queue.follow(info.id)) events.push(event);
        expect(typesOf(events)).toEqual(['started', 'completed']);
        expect((await queue.getJob(info.id)).state).toBe('completed');
        for (const owner of [OWNER, '']) {
          await expect(queue.getJob(info.id, { owner })).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.readEvents(info.id, { owner })).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.cancel(info.id, { owner })).rejects.toBeInstanceOf(JobNotFoundError);
        }
      });

      it('checkHealth resolves', async () => {
        await expect(queue.checkHealth()).resolves.toBeUndefined();
      });
    });

    describe('unknown jobs and owners', () => {
      it('a never-enqueued id is unknown at once for getJob, readEvents (even long-polled), follow and cancel', async () => {
        const injectionLooking = ['*', '{jq}', 'x}:meta', "'; DROP TABLE jobs; --", '../../etc/passwd', '\u0000', 'a'.repeat(10_000)];
        for (const id of [randomUUID(), 'no-such-job', '0', ...injectionLooking]) {
          const started = performance.now();
          await expect(queue.getJob(id, { owner: OWNER })).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.getJob(id)).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.readEvents(id, { owner: OWNER, waitMs: LONG_WAIT_MS })).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.readEvents(id, { waitMs: LONG_WAIT_MS })).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.follow(id, { owner: OWNER }).next()).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.cancel(id, { owner: OWNER })).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(queue.cancel(id)).rejects.toBeInstanceOf(JobNotFoundError);
          expect(performance.now() - started).toBeLessThan(2_000);
        }
      });

      it("another owner's job is not found, indistinguishably, and is left untouched", async () => {
        const { gate, id, events: seenByOwner } = await startGatedJob(queue);
        const started = performance.now();
        const errors = [
          await rejectionOf(queue.getJob(id, { owner: STRANGER })),
          await rejectionOf(queue.readEvents(id, { owner: STRANGER, waitMs: LONG_WAIT_MS })),
          await rejectionOf(queue.follow(id, { owner: STRANGER }).next()),
          await rejectionOf(queue.cancel(id, { owner: STRANGER })),
        ];
        expect(performance.now() - started).toBeLessThan(2_000);
        for (const error of errors) expect(error).toBeInstanceOf(JobNotFoundError);

        const unknownId = randomUUID();
        const unknown = (await rejectionOf(queue.getJob(unknownId, { owner: STRANGER }))) as JobNotFoundError;
        const foreign = errors[0] as JobNotFoundError;
        expect(foreign.code).toBe(unknown.code);
        expect(foreign.message.replace(id, '<id>')).toBe(unknown.message.replace(unknownId, '<id>'));

        expect((await queue.getJob(id, { owner: OWNER })).state).toBe('running');
        gate.open();
        const events = await readAll(queue, id);
        expect(typesOf(events)).toEqual(['started', 'waiting', 'opened', 'completed']);
        expect(events.slice(0, seenByOwner.length)).toEqual(seenByOwner);

        // Finished jobs too: a stranger's cancel is "not found", never "already finished".
        await expect(queue.cancel(id, { owner: STRANGER })).rejects.toBeInstanceOf(JobNotFoundError);
        await expect(queue.readEvents(id, { owner: STRANGER })).rejects.toBeInstanceOf(JobNotFoundError);
        await expect(queue.getJob(id, { owner: STRANGER })).rejects.toBeInstanceOf(JobNotFoundError);
      });

      it('omitting owner gives access to any job, including cancel', async () => {
        const { id, events: seenByOwner } = await startGatedJob(queue);
        expect(await queue.getJob(id)).toMatchObject({ id, state: 'running' });
        expect((await queue.readEvents(id)).events).toEqual(seenByOwner);
        const followed: JobEvent[] = [];
        for await (const event of queue.follow(id)) {
          followed.push(event);
          if (kind.toJobEvent(event).type === 'waiting') break;
        }
        expect(followed).toEqual(seenByOwner);
        expect(await queue.cancel(id, { reason: 'by an operator' })).toMatchObject({ id, state: 'cancelled' });
        const events = await readAll(queue, id);
        expect(events[events.length - 1]).toMatchObject({ type: 'cancelled', data: { reason: 'by an operator' } });
      });
    });

    describe('event stream', () => {
      it(`a completed job: started {attempt:1}, the ${kind.name}'s events in order, one completed {result}`, async () => {
        const before = Date.now();
        const info = await enqueue(queue, JOBS.emit, { count: 5 });
        const events = await readAll(queue, info.id);
        expect(simplify(events)).toEqual([
          ['started', { attempt: 1 }],
          ['tick', { index: 0 }],
          ['tick', { index: 1 }],
          ['tick', { index: 2 }],
          ['tick', { index: 3 }],
          ['tick', { index: 4 }],
          ['completed', { result: { count: 5 } }],
        ]);
        expectWellFormedStream(events);
        for (const event of events) {
          expect(event.ts).toBeGreaterThanOrEqual(before - 1_000);
          expect(event.ts).toBeLessThanOrEqual(Date.now() + 1_000);
        }
      });

      it('a failed job ends with one failed {error:{message}} and reports the error', async () => {
        const info = await enqueue(queue, JOBS.fail, { message: 'kaboom' });
        const events = await readAll(queue, info.id);
        expect(simplify(events)).toEqual([
          ['started', { attempt: 1 }],
          ['before', { attempt: 1 }],
          ['failed', { error: { message: 'kaboom' } }],
        ]);
        expectWellFormedStream(events);
        const job = await queue.getJob(info.id, { owner: OWNER });
        expect(job).toMatchObject({ state: 'failed', attempt: 1, error: { message: 'kaboom' } });
        expect(job.result).toBeUndefined();
      });

      it('ids are unique and ordered: reading after the k-th event returns exactly the events after it', async () => {
        const info = await enqueue(queue, JOBS.emit, { count: 20 });
        const events = await readAll(queue, info.id);
        expect(events).toHaveLength(22);
        expectWellFormedStream(events);
        expect((await queue.readEvents(info.id, { owner: OWNER })).events).toEqual(events);
        expect((await queue.readEvents(info.id, { owner: OWNER, after: '0' })).events).toEqual(events);
        for (let k = 0; k < events.length; k++) {
          const page = await queue.readEvents(info.id, { owner: OWNER, after: events[k].id });
          expect(page.events).toEqual(events.slice(k + 1));
        }
      });

      it('pages with limit: next is the last id, done only on the page holding the terminal event', async () => {
        const info = await enqueue(queue, JOBS.emit, { count: 25 });
        const all = await readAll(queue, info.id);
        expect(all).toHaveLength(27);

        const pages: Array<{ size: number; done: boolean }> = [];
        const collected: JobEvent[] = [];
        let cursor = '0';
        for (;;) {
          const page = await queue.readEvents(info.id, { owner: OWNER, after: cursor, limit: 7 });
          pages.push({ size: page.events.length, done: page.done });
          collected.push(...page.events);
          expect(page.next).toBe(page.events[page.events.length - 1].id);
          cursor = page.next;
          if (page.done) break;
        }
        expect(pages).toEqual([
          { size: 7, done: false },
          { size: 7, done: false },
          { size: 7, done: false },
          { size: 6, done: true },
        ]);
        expect(collected).toEqual(all);

        // A page that stops just before the terminal event is not done; the next one is.
        const head = await queue.readEvents(info.id, { owner: OWNER, limit: 26 });
        expect(head).toEqual({ events: all.slice(0, 26), next: all[25].id, done: false });
        const tail = await queue.readEvents(info.id, { owner: OWNER, after: head.next, limit: 26 });
        expect(tail).toEqual({ events: all.slice(26), next: all[26].id, done: true });

        // After the terminal event: empty, done, and next is the cursor given.
        const end = await queue.readEvents(info.id, { owner: OWNER, after: tail.next });
        expect(end).toEqual({ events: [], next: tail.next, done: true });

        expect((await queue.readEvents(info.id, { owner: OWNER, limit: 1 })).events).toEqual(all.slice(0, 1));
      });

      it('next and done while running: not done, and next stays at the given cursor when nothing is new', async () => {
        const { gate, id, events, next } = await startGatedJob(queue);
        expect(typesOf(events)).toEqual(['started', 'waiting']);
        expect(next).toBe(events[events.length - 1].id);

        const page = await queue.readEvents(id, { owner: OWNER });
        expect(page).toEqual({ events, next, done: false });
        const empty = await queue.readEvents(id, { owner: OWNER, after: next });
        expect(empty).toEqual({ events: [], next, done: false });

        gate.open();
        const rest = await readAll(queue, id, next);
        expect(typesOf(rest)).toEqual(['opened', 'completed']);
      });

      it('a finished job replays, and reading at its end returns at once even with waitMs', async () => {
        const info = await enqueue(queue, JOBS.emit, { count: 3 });
        const all = await readAll(queue, info.id);
        expect(await readAll(queue, info.id)).toEqual(all);
        expect(await readAll(queue, info.id, all[1].id)).toEqual(all.slice(2));

        const terminalId = all[all.length - 1].id;
        const started = performance.now();
        const end = await queue.readEvents(info.id, { owner: OWNER, after: terminalId, waitMs: LONG_WAIT_MS });
        expect(performance.now() - started).toBeLessThan(2_000);
        expect(end).toEqual({ events: [], next: terminalId, done: true });
        expect(await follow(queue, info.id)).toEqual(all);
        expect(await follow(queue, info.id, terminalId)).toEqual([]);
      });

      it('a bad cursor is InvalidCursorError; a bad limit or waitMs is InvalidArgumentError', async () => {
        const info = await enqueue(queue, JOBS.emit, { count: 1 });
        await readAll(queue, info.id);
        for (const after of ['not-a-cursor', '-1', 'x'.repeat(300)]) {
          await expect(queue.readEvents(info.id, { owner: OWNER, after })).rejects.toBeInstanceOf(InvalidCursorError);
          await expect(queue.follow(info.id, { owner: OWNER, after }).next()).rejects.toBeInstanceOf(InvalidCursorError);
        }
        for (const options of [{ limit: 0 }, { limit: 1001 }, { limit: 1.5 }, { waitMs: -1 }, { waitMs: 30_001 }]) {
          await expect(queue.readEvents(info.id, { owner: OWNER, ...options })).rejects.toBeInstanceOf(InvalidArgumentError);
        }
      });
      it('a cursor beyond the last event is InvalidCursorError for running and ended jobs, even long-polled or followed', async () => {
        const running = await startGatedJob(queue);
        const ended = await enqueue(queue, JOBS.emit, { count: 1 });
        await readAll(queue, ended.id);
        // A later job with more events: its last id lies beyond the end of both (cursors stay opaque).
        const later = await enqueue(queue, JOBS.emit, { count: 5 });
        const beyond = (await readAll(queue, later.id)).at(-1)!.id;
        for (const id of [running.id, ended.id]) {
          await expect(queue.readEvents(id, { owner: OWNER, after: beyond })).rejects.toBeInstanceOf(InvalidCursorError);
          await expect(queue.readEvents(id, { owner: OWNER, after: beyond, waitMs: LONG_WAIT_MS })).rejects.toBeInstanceOf(
            InvalidCursorError,
          );
          await expect(queue.follow(id, { owner: OWNER, after: beyond }).next()).rejects.toBeInstanceOf(InvalidCursorError);
        }
        // Ownership comes first: to a stranger the job is unknown, whatever the cursor.
        await expect(queue.readEvents(ended.id, { owner: STRANGER, after: beyond })).rejects.toBeInstanceOf(JobNotFoundError);
        running.gate.open();
        expect(typesOf(await readAll(queue, running.id, running.next))).toEqual(['opened', 'completed']);
      });
    });

    describe('long-poll', () => {
      it('a waiting read resolves with the new event as soon as it is emitted', async () => {
        const { gate, id, next } = await startGatedJob(queue);
        const read = queue.readEvents(id, { owner: OWNER, after: next, waitMs: LONG_WAIT_MS });
        expect(await settlesWithin(read, 100)).toBe(false);
        const opened = performance.now();
        gate.open();
        const page = await read;
        expect(performance.now() - opened).toBeLessThan(2_000);
        expect(page.events.length).toBeGreaterThan(0);
        expect(simplify(page.events)[0]).toEqual(['opened', { attempt: 1 }]);
        expect(page.next).toBe(page.events[page.events.length - 1].id);
        expect(await readAll(queue, id, page.next)).toEqual(page.done ? [] : [expect.objectContaining({ type: 'completed' })]);
      });

      it('returns an empty page after waitMs when nothing happens', async () => {
        const { id, next } = await startGatedJob(queue);
        const started = performance.now();
        const page = await queue.readEvents(id, { owner: OWNER, after: next, waitMs: 200 });
        const elapsed = performance.now() - started;
        expect(page).toEqual({ events: [], next, done: false });
        expect(elapsed).toBeGreaterThanOrEqual(180);
        expect(elapsed).toBeLessThan(2_000);
      });

      it('aborting the signal ends the wait early with an empty page', async () => {
        const { id, next } = await startGatedJob(queue);
        const controller = new AbortController();
        const read = queue.readEvents(id, { owner: OWNER, after: next, waitMs: LONG_WAIT_MS, signal: controller.signal });
        expect(await settlesWithin(read, 100)).toBe(false);
        const aborted = performance.now();
        controller.abort();
        expect(await read).toEqual({ events: [], next, done: false });
        expect(performance.now() - aborted).toBeLessThan(1_000);

        const started = performance.now();
        expect(await queue.readEvents(id, { owner: OWNER, after: next, waitMs: LONG_WAIT_MS, signal: controller.signal })).toEqual({
          events: [],
          next,
          done: false,
        });
        expect(performance.now() - started).toBeLessThan(1_000);
      });
    });

    describe('follow', () => {
      it('yields every event of a live job, in order, and ends after the terminal event', async () => {
        const gate = createGate();
        const info = await enqueue(queue, JOBS.gated, { gate: gate.key });
        const events: JobEvent[] = [];
        for await (const event of queue.follow(info.id, { owner: OWNER })) {
          events.push(event);
          if (kind.toJobEvent(event).type === 'waiting') gate.open();
        }
        expect(typesOf(events)).toEqual(['started', 'waiting', 'opened', 'completed']);
        expectWellFormedStream(events);
        expect(events).toEqual(await readAll(queue, info.id));
      });

      it('resumes after any event with exactly the rest', async () => {
        const info = await enqueue(queue, JOBS.emit, { count: 10 });
        const all = await follow(queue, info.id);
        expect(all).toHaveLength(12);
        expect(await follow(queue, info.id, '0')).toEqual(all);
        for (const k of [0, 5, 10, 11]) expect(await follow(queue, info.id, all[k].id)).toEqual(all.slice(k + 1));
      });

      it('resumed in the middle of a live job, it continues with the following events', async () => {
        const { gate, id, events: head, next } = await startGatedJob(queue);
        const iterator = queue.follow(id, { owner: OWNER, after: head[0].id });
        expect((await iterator.next()).value).toEqual(head[1]);
        const pending = iterator.next();
        expect(await settlesWithin(pending, 100)).toBe(false);
        gate.open();
        const rest: JobEvent[] = [(await pending).value as JobEvent];
        for (let step = await iterator.next(); !step.done; step = await iterator.next()) rest.push(step.value);
        expect(typesOf(rest)).toEqual(['opened', 'completed']);
        expect(rest).toEqual(await readAll(queue, id, next));
      });

      it('stops when its signal aborts, even while waiting', async () => {
        const { id } = await startGatedJob(queue);
        const controller = new AbortController();
        const iterator = queue.follow(id, { owner: OWNER, signal: controller.signal });
        expect(typesOf([(await iterator.next()).value as JobEvent, (await iterator.next()).value as JobEvent])).toEqual([
          'started',
          'waiting',
        ]);
        const pending = iterator.next();
        expect(await settlesWithin(pending, 100)).toBe(false);
        const aborted = performance.now();
        controller.abort();
        expect(await pending).toEqual({ done: true, value: undefined });
        expect(performance.now() - aborted).toBeLessThan(1_000);
      });
    });

    describe('cancel', () => {
      it('a queued job is cancelled without ever running, and a waiting reader sees cancelled', async () => {
        await withApp({ concurrency: 1 }, async (q) => {
          const gate = createGate();
          const blocker = await enqueue(q, JOBS.gated, { gate: gate.key });
          await gate.entered;
          const key = uniqueKey('cancel-queued');
          const victim = await enqueue(q, JOBS.record, { key, label: 'victim' });
          expect(await q.getJob(victim.id, { owner: OWNER })).toMatchObject({ state: 'queued', attempt: 0 });

          const read = q.readEvents(victim.id, { owner: OWNER, waitMs: LONG_WAIT_MS });
          expect(await settlesWithin(read, 100)).toBe(false);
          expect(await q.cancel(victim.id, { owner: OWNER })).toMatchObject({ id: victim.id, state: 'cancelled' });
          const page = await read;
          expect(simplify(page.events)).toEqual([['cancelled', { reason: 'cancelled' }]]);
          expect(page.done).toBe(true);

          // Let the queue move on; a job enqueued after the victim runs, the victim does not.
          gate.open();
          const later = await enqueue(q, JOBS.record, { key, label: 'later' });
          expect(typesOf(await readAll(q, later.id))).toEqual(['started', 'completed']);
          expect(typesOf(await readAll(q, blocker.id))).toEqual(['started', 'waiting', 'opened', 'completed']);
          expect(runLog(key)).toEqual(['later']);
          expect(await readAll(q, victim.id)).toEqual(page.events);
          expect(await q.getJob(victim.id, { owner: OWNER })).toMatchObject({ state: 'cancelled', attempt: 0 });
        });
      });

      it("a running job's signal fires and its stream ends with cancelled {reason}; later emits are dropped", async () => {
        const { gate, id, events: head } = await startGatedJob(queue);
        expect(await queue.cancel(id, { owner: OWNER, reason: 'user asked' })).toMatchObject({ id, state: 'cancelled' });
        const report = await within(gate.finished, 5_000, `the ${kind.name} to see its signal fire`);
        expect(report).toMatchObject({ attempt: 1, aborted: true });
        const events = await readAll(queue, id);
        expect(events.slice(0, head.length)).toEqual(head);
        expect(simplify(events)).toEqual([
          ['started', { attempt: 1 }],
          ['waiting', { attempt: 1 }],
          ['cancelled', { reason: 'user asked' }],
        ]);
        expectWellFormedStream(events);
        expect(await queue.getJob(id, { owner: OWNER })).toMatchObject({ state: 'cancelled' });
      });

      it('a finished job cannot be cancelled: JobAlreadyFinishedError, stream unchanged', async () => {
        const completed = await enqueue(queue, JOBS.emit, { count: 1 });
        const failed = await enqueue(queue, JOBS.fail, { message: 'nope' });
        const cancelled = await startGatedJob(queue);
        await queue.cancel(cancelled.id, { owner: OWNER });
        for (const [id, state] of [
          [completed.id, 'completed'],
          [failed.id, 'failed'],
          [cancelled.id, 'cancelled'],
        ]) {
          const events = await readAll(queue, id);
          await expect(queue.cancel(id, { owner: OWNER })).rejects.toBeInstanceOf(JobAlreadyFinishedError);
          await expect(queue.cancel(id)).rejects.toBeInstanceOf(JobAlreadyFinishedError);
          expect(await readAll(queue, id)).toEqual(events);
          expect((await queue.getJob(id, { owner: OWNER })).state).toBe(state);
        }
      });

      it('concurrent cancels: exactly one wins, the others get JobAlreadyFinishedError, one terminal event', async () => {
        const { gate, id } = await startGatedJob(queue);
        const results = await Promise.allSettled(
          Array.from({ length: 5 }, (_, index) => queue.cancel(id, { owner: OWNER, reason: `cancel ${index}` })),
        );
        const winners = results.filter((result) => result.status === 'fulfilled');
        const losers = results.filter((result) => result.status === 'rejected');
        expect(winners).toHaveLength(1);
        for (const loser of losers) expect(loser.reason).toBeInstanceOf(JobAlreadyFinishedError);
        await within(gate.finished, 5_000, `the ${kind.name} to see its signal fire`);
        const events = await readAll(queue, id);
        expectWellFormedStream(events);
        const winnerIndex = results.indexOf(winners[0]);
        expect(simplify(events).slice(-1)).toEqual([['cancelled', { reason: `cancel ${winnerIndex}` }]]);
      });
    });

    describe('retries', () => {
      it('a failed attempt is retried: started 1, started 2, one completed', async () => {
        const info = await enqueue(queue, JOBS.failFirst, {}, { attempts: 2 });
        const events = await readAll(queue, info.id);
        expect(simplify(events)).toEqual([
          ['started', { attempt: 1 }],
          ['try', { attempt: 1 }],
          ['started', { attempt: 2 }],
          ['try', { attempt: 2 }],
          ['completed', { result: { attempt: 2 } }],
        ]);
        expectWellFormedStream(events);
        expect(await queue.getJob(info.id, { owner: OWNER })).toMatchObject({ state: 'completed', attempt: 2, maxAttempts: 2 });
      });

      it(`after the last attempt fails, the job fails with the ${kind.name}'s message`, async () => {
        const info = await enqueue(queue, JOBS.fail, { message: 'always broken' }, { attempts: 3 });
        const events = await readAll(queue, info.id);
        expect(simplify(events)).toEqual([
          ['started', { attempt: 1 }],
          ['before', { attempt: 1 }],
          ['started', { attempt: 2 }],
          ['before', { attempt: 2 }],
          ['started', { attempt: 3 }],
          ['before', { attempt: 3 }],
          ['failed', { error: { message: 'always broken' } }],
        ]);
        expectWellFormedStream(events);
        expect(await queue.getJob(info.id, { owner: OWNER })).toMatchObject({
          state: 'failed',
          attempt: 3,
          maxAttempts: 3,
          error: { message: 'always broken' },
        });
      });

      it('backoffMs: the retry starts no sooner than that after the failed attempt; the job reads queued meanwhile', async () => {
        const backoffMs = 1500;
        const info = await enqueue(queue, JOBS.failFirst, {}, { attempts: 2, backoffMs });
        const first = await readUntil(queue, info.id, (event) => event.type === 'try');
        // A third of the backoff later nothing new has come, and the job waits for its next attempt.
        const quiet = await queue.readEvents(info.id, { owner: OWNER, after: first.next, waitMs: backoffMs / 3 });
        expect(quiet.events).toEqual([]);
        expect(await queue.getJob(info.id, { owner: OWNER })).toMatchObject({ state: 'queued', attempt: 1, maxAttempts: 2 });
        const rest = await readAll(queue, info.id, first.next);
        expect(simplify([...first.events, ...rest])).toEqual([
          ['started', { attempt: 1 }],
          ['try', { attempt: 1 }],
          ['started', { attempt: 2 }],
          ['try', { attempt: 2 }],
          ['completed', { result: { attempt: 2 } }],
        ]);
        expect(rest[0].ts - first.events.at(-1)!.ts).toBeGreaterThanOrEqual(backoffMs);
      });

      it('defaultAttempts applies when enqueue does not say', async () => {
        await withApp({ defaultAttempts: 2 }, async (q) => {
          const info = await enqueue(q, JOBS.failFirst, {});
          expect(info.maxAttempts).toBe(2);
          expect(typesOf(await readAll(q, info.id))).toEqual(['started', 'try', 'started', 'try', 'completed']);
          const single = await enqueue(q, JOBS.failFirst, {}, { attempts: 1 });
          expect(simplify(await readAll(q, single.id)).slice(-1)).toEqual([['failed', { error: { message: 'first attempt fails' } }]]);
        });
      });
    });

    describe('event and result validation', () => {
      if (kind.name === 'handler') {
        it('an invalid emit throws InvalidEventError at once and leaves the stream intact', async () => {
          const maxEventBytes = 256;
          await withApp({ maxEventBytes }, async (q) => {
            const info = await enqueue(q, JOBS.invalidEmits, { maxEventBytes });
            const events = await readAll(q, info.id);
            expectWellFormedStream(events);
            expect(typesOf(events)).toEqual(['started', ...Array<string>(11).fill('rejected'), 'data', 'last', 'completed']);
            const rejected = events.filter((event) => event.type === 'rejected').map((event) => event.data as RejectedEmit);
            expect(rejected.map((report) => report.case)).toEqual([
              'reserved type completed',
              'reserved type started',
              'reserved type failed',
              'reserved type cancelled',
              'empty type',
              'type with a space',
              'bigint data',
              'circular data',
              'function data',
              'ascii data over maxEventBytes',
              'utf-8 data over maxEventBytes',
            ]);
            for (const report of rejected) {
              expect(report).toEqual({ case: report.case, outcome: 'threw', error: 'InvalidEventError', invalidEvent: true });
            }
            expect(events[events.length - 3].data).toBe('x'.repeat(maxEventBytes - 2));
            expect(simplify(events.slice(-2))).toEqual([
              ['last', { ok: true }],
              ['completed', { result: { tried: 11 } }],
            ]);
          });
        });
      } else {
        // A processor's calls are BullMQ's: nothing refuses them for the stream. A value the stream
        // cannot carry becomes a `gap` event saying so; one BullMQ refuses is not bridged at all.
        it('a processor call the stream cannot carry becomes a gap event, one BullMQ refuses none; the stream stays intact', async () => {
          const maxEventBytes = 256;
          await withApp({ maxEventBytes }, async (q) => {
            const key = uniqueKey('uncarriable');
            const info = await enqueue(q, PROCESSOR_JOBS.uncarriableCalls, { key, maxEventBytes });
            const events = await readAll(q, info.id);
            expectWellFormedStream(events);
            const gap = (call: string, why: string) => [
              'gap',
              { reason: expect.stringMatching(new RegExp(`^a ${call} call was not bridged: .*${why}`)) },
            ];
            const tooLarge = `over maxEventBytes \\(${maxEventBytes}\\)`;
            const logOverhead = JSON.stringify({ message: '' }).length;
            expect(simplifyRaw(events)).toEqual([
              ['started', { attempt: 1 }],
              gap('progress', tooLarge),
              gap('progress', tooLarge),
              gap('log', tooLarge),
              gap('progress', 'not JSON-serializable'),
              ['progress', { type: 'completed', data: { result: 'forged' } }],
              ['log', { message: 'cancelled' }],
              ['progress', 'x'.repeat(maxEventBytes - 2)],
              ['log', { message: 'y'.repeat(maxEventBytes - logOverhead) }],
              ['completed', { result: { tried: UNCARRIABLE_CALLS.length } }],
            ]);
            const refused = new Set(['bigint progress', 'circular progress']);
            expect(await reportOf<UncarriableCallsReport>(key)).toEqual(
              UNCARRIABLE_CALLS.map(([call]) =>
                refused.has(call) ? { case: call, outcome: 'rejected', error: expect.any(String) } : { case: call, outcome: 'resolved' },
              ),
            );
          });
        });
      }

      it('a result JSON cannot represent fails the job; undefined becomes null', async () => {
        for (const resultKind of ['bigint', 'circular', 'function']) {
          const info = await enqueue(queue, JOBS.badResult, { kind: resultKind });
          const events = await readAll(queue, info.id);
          expectWellFormedStream(events);
          expect(typesOf(events)).toEqual(['started', 'failed']);
          expect((events[1].data as { error: { message: string } }).error.message).toMatch(/JSON/);
          expect((await queue.getJob(info.id, { owner: OWNER })).state).toBe('failed');
        }
        const info = await enqueue(queue, JOBS.badResult, { kind: 'undefined' });
        expect(simplify(await readAll(queue, info.id))).toEqual([
          ['started', { attempt: 1 }],
          ['completed', { result: null }],
        ]);
      });
    });

    describe('limits', () => {
      const maxEventsPerJob = 10;

      it('hitting maxEventsPerJob fails the job visibly, without retry, and fires the signal', async () => {
        await withApp({ maxEventsPerJob }, async (q) => {
          const key = uniqueKey('flood');
          const gate = createGate(); // never opened: the job waits for its signal
          const info = await enqueue(q, JOBS.flood, { key, count: 50, gate: gate.key }, { attempts: 3 });
          const events = await readAll(q, info.id);
          expectWellFormedStream(events);
          // The cap counts every event, lifecycle included, and is used up to the last slot.
          expect(events).toHaveLength(maxEventsPerJob);
          expect(typesOf(events.slice(0, 1))).toEqual(['started']);
          expect(simplify(events.slice(1, -1)).map(([, data]) => data)).toEqual(
            Array.from({ length: maxEventsPerJob - 2 }, (_, index) => ({ index })),
          );
          const terminal = events[events.length - 1];
          expect(terminal.type).toBe('failed');
          expect((terminal.data as { error: { message: string } }).error.message).toContain('maxEventsPerJob');
          expect(await within(reportOf<FloodReport>(key), 5_000, `the ${kind.name} to see its signal fire`)).toMatchObject({
            attempt: 1,
            signalAborted: true,
          });
          expect(await q.getJob(info.id, { owner: OWNER })).toMatchObject({ state: 'failed', attempt: 1 });
        });
      });

      it(`a ${kind.name} that ignores the event cap and returns normally still fails; no event beyond the cap lands`, async () => {
        await withApp({ maxEventsPerJob }, async (q) => {
          const key = uniqueKey('flood');
          const info = await enqueue(q, JOBS.flood, { key, count: 50 });
          await reportOf<FloodReport>(key);
          const events = await readAll(q, info.id);
          expectWellFormedStream(events);
          expect(events.length).toBeLessThanOrEqual(maxEventsPerJob);
          const ticks = simplify(events)
            .filter(([type]) => type === 'tick')
            .map(([, data]) => data);
          expect(ticks).toEqual(Array.from({ length: ticks.length }, (_, index) => ({ index })));
          expect(events[events.length - 1].type).toBe('failed');
          expect((events[events.length - 1].data as { error: { message: string } }).error.message).toContain('maxEventsPerJob');
        });
      });

      it('retries count against maxEventsPerJob too: the cap holds with one terminal event', async () => {
        await withApp({ maxEventsPerJob }, async (q) => {
          const info = await enqueue(q, JOBS.emitThenFail, { count: maxEventsPerJob - 3 }, { attempts: 5 });
          const events = await readAll(q, info.id);
          expectWellFormedStream(events);
          expect(events.length).toBeLessThanOrEqual(maxEventsPerJob);
          expect(events[events.length - 1].type).toBe('failed');
          expect(await q.getJob(info.id, { owner: OWNER })).toMatchObject({ state: 'failed' });
        });
      });

      it('concurrency is respected: with 2 slots a third job stays queued until one frees', async () => {
        await withApp({ concurrency: 2 }, async (q) => {
          const group = uniqueKey('group');
          const gates = [createGate(), createGate(), createGate()];
          const jobs = [];
          for (const gate of gates) jobs.push(await enqueue(q, JOBS.gated, { gate: gate.key, group }));
          await Promise.all([gates[0].entered, gates[1].entered]);
          expect(groupActivity(group)).toMatchObject({ active: 2, maxActive: 2 });

          expect(await q.getJob(jobs[2].id, { owner: OWNER })).toMatchObject({ state: 'queued', attempt: 0 });
          expect(await q.readEvents(jobs[2].id, { owner: OWNER, after: START_CURSOR, waitMs: 200 })).toEqual({
            events: [],
            next: START_CURSOR,
            done: false,
          });

          const read = q.readEvents(jobs[2].id, { owner: OWNER, waitMs: LONG_WAIT_MS });
          expect(await settlesWithin(read, 50)).toBe(false);
          gates[0].open();
          expect(simplify((await read).events)[0]).toEqual(['started', { attempt: 1 }]);
          await gates[2].entered;
          // The first two run side by side, so either may record its start first; the third starts only after one frees.
          const started = groupActivity(group).started;
          expect([...started.slice(0, 2)].sort()).toEqual([jobs[0].id, jobs[1].id].sort());
          expect(started.slice(2)).toEqual([jobs[2].id]);

          gates[1].open();
          gates[2].open();
          for (const job of jobs) expect(typesOf(await readAll(q, job.id))).toEqual(['started', 'waiting', 'opened', 'completed']);
          expect(groupActivity(group).maxActive).toBe(2);
        });
      });

      it('priority: unprioritized jobs first in order, then lower priority numbers, ties in order', async () => {
        await withApp({ concurrency: 1 }, async (q) => {
          const gate = createGate();
          const blocker = await enqueue(q, JOBS.gated, { gate: gate.key });
          await gate.entered;
          const key = uniqueKey('priority');
          const plan: Array<[string, number | undefined]> = [
            ['p3', 3],
            ['none-1', undefined],
            ['p1', 1],
            ['p2-a', 2],
            ['none-2', undefined],
            ['p2-b', 2],
          ];
          const jobs = [];
          for (const [label, priority] of plan) jobs.push(await enqueue(q, JOBS.record, { key, label }, { priority }));
          for (const job of jobs) expect((await q.getJob(job.id, { owner: OWNER })).state).toBe('queued');
          gate.open();
          await readAll(q, blocker.id);
          for (const job of jobs) await readAll(q, job.id);
          expect(runLog(key)).toEqual(['none-1', 'none-2', 'p1', 'p2-a', 'p2-b', 'p3']);
        });
      });
    });

    describe('retention', () => {
      it('a finished job stays readable for retentionMs and is unknown afterwards; running jobs are kept', async () => {
        await withApp({ retentionMs: 1_000 }, async (q) => {
          const running = await startGatedJob(q);
          const done = await enqueue(q, JOBS.emit, { count: 2 });
          const cancelled = await startGatedJob(q);
          const events = await readAll(q, done.id);
          await q.cancel(cancelled.id, { owner: OWNER });
          const cancelledEvents = await readAll(q, cancelled.id);
          expect((await q.getJob(done.id, { owner: OWNER })).state).toBe('completed');
          expect(await readAll(q, done.id)).toEqual(events);

          const goneAt = await waitUntilGone(q, done.id, 10_000);
          expect(goneAt - events[events.length - 1].ts).toBeGreaterThanOrEqual(900);
          await expect(q.readEvents(done.id, { owner: OWNER })).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(q.readEvents(done.id)).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(q.follow(done.id, { owner: OWNER }).next()).rejects.toBeInstanceOf(JobNotFoundError);
          await expect(q.cancel(done.id, { owner: OWNER })).rejects.toBeInstanceOf(JobNotFoundError);

          const cancelledGoneAt = await waitUntilGone(q, cancelled.id, 10_000);
          expect(cancelledGoneAt - cancelledEvents[cancelledEvents.length - 1].ts).toBeGreaterThanOrEqual(900);

          // Retention counts from the end: the job running all along is still there.
          expect(await q.getJob(running.id, { owner: OWNER })).toMatchObject({ state: 'running' });
          running.gate.open();
          expect(typesOf(await readAll(q, running.id))).toEqual(['started', 'waiting', 'opened', 'completed']);
        });
      });
    });

    describe('circuit breaker', () => {
      /** Breaker options for the breaker job's name only (no other name gets one). */
      function breakerOn(failures: number, coolDownMs: number): ContractOptions {
        return { circuitBreakers: { [JOBS.breaker]: { failures, windowMs: 60_000, coolDownMs } } };
      }

      async function breakerState(q: ContractQueue) {
        const states = await q.circuitBreakers();
        const state = states.find((breaker) => breaker.name === JOBS.breaker);
        if (!state) throw new Error(`no breaker of ${JOBS.breaker} in ${JSON.stringify(states)}`);
        return state;
      }

      /** Enqueues a failing breaker job and reads it to its end: one failed attempt. */
      async function failOnce(q: ContractQueue): Promise<JobEvent[]> {
        const info = await enqueue(q, JOBS.breaker, { fail: true });
        const events = await readAll(q, info.id);
        expect(typesOf(events)).toEqual(['started', 'ran', 'failed']);
        return events;
      }

      /** A job held back by an open breaker: queued, never started, no attempt used, its reason visible. */
      async function expectHeldBack(q: ContractQueue, id: string, until: number | undefined): Promise<void> {
        const page = await q.readEvents(id, { owner: OWNER, waitMs: 1_500 });
        expect({ events: page.events, done: page.done }).toEqual({ events: [], done: false });
        const info = await q.getJob(id, { owner: OWNER });
        expect(info).toMatchObject({ state: 'queued', attempt: 0 });
        expect(info.startedAt).toBeUndefined();
        expect(info.waitingFor).toEqual(until === undefined ? { circuitBreaker: JOBS.breaker } : { circuitBreaker: JOBS.breaker, until });
      }

      it('opens after `failures` failed attempts: jobs of that name wait queued (reason shown, no started event, no attempt used); other names run', async () => {
        await withApp(breakerOn(3, 60_000), async (q) => {
          expect(await breakerState(q)).toEqual({
            name: JOBS.breaker,
            state: 'closed',
            recentFailures: 0,
            options: { failures: 3, windowMs: 60_000, coolDownMs: 60_000 },
          });
          await failOnce(q);
          await failOnce(q);
          expect(await breakerState(q)).toMatchObject({ state: 'closed', recentFailures: 2 });
          const third = await failOnce(q);
          const open = await breakerState(q);
          expect(open).toMatchObject({ state: 'open', recentFailures: 3 });
          expect(open.openUntil).toBeGreaterThanOrEqual(third[third.length - 1].ts + 60_000 - 1_000);

          const held = await enqueue(q, JOBS.breaker, {}, { attempts: 2 });
          expect(held).toMatchObject({ state: 'queued', attempt: 0, maxAttempts: 2 });
          // Another name is not affected, before or after the held job was picked up.
          const other = await enqueue(q, JOBS.echo, { n: 1 });
          expect(typesOf(await readAll(q, other.id))).toEqual(['started', 'completed']);
          await expectHeldBack(q, held.id, open.openUntil);
          expect(await breakerState(q)).toMatchObject({ state: 'open', openUntil: open.openUntil, recentFailures: 3 });

          // A held-back job can still be cancelled; it ends without ever starting.
          await q.cancel(held.id, { owner: OWNER, reason: 'no longer needed' });
          expect(simplify(await readAll(q, held.id))).toEqual([['cancelled', { reason: 'no longer needed' }]]);
          expect(await q.getJob(held.id, { owner: OWNER })).toMatchObject({ state: 'cancelled', attempt: 0 });
        });
      });

      it('a cancelled attempt does not count as a failure', async () => {
        await withApp(breakerOn(1, 60_000), async (q) => {
          const gate = createGate();
          const info = await enqueue(q, JOBS.breaker, { gate: gate.key, fail: true });
          await readUntil(q, info.id, (event) => event.type === 'ran');
          await q.cancel(info.id, { owner: OWNER });
          expect(typesOf(await readAll(q, info.id)).slice(-1)).toEqual(['cancelled']);
          const next = await enqueue(q, JOBS.breaker, {});
          expect(typesOf(await readAll(q, next.id))).toEqual(['started', 'ran', 'completed']);
          expect(await breakerState(q)).toMatchObject({ state: 'closed', recentFailures: 0 });
        });
      });

      it('after the cool-down exactly one job runs as the probe while the others wait; its success closes the breaker', async () => {
        await withApp(breakerOn(2, 1_500), async (q) => {
          await failOnce(q);
          await failOnce(q);
          const { openUntil } = await breakerState(q);
          const gates = [createGate(), createGate(), createGate()];
          const jobs = await Promise.all(gates.map((gate) => enqueue(q, JOBS.breaker, { gate: gate.key })));
          // The probe: the first of them whose handler runs.
          const probeIndex = await Promise.race(
            jobs.map((job, index) => readUntil(q, job.id, (event) => event.type === 'ran').then(() => index)),
          );
          const probe = jobs[probeIndex];
          const others = jobs.filter((_, index) => index !== probeIndex);
          const probeEvents = await q.readEvents(probe.id, { owner: OWNER });
          expect(probeEvents.events[0].ts).toBeGreaterThanOrEqual(openUntil!);
          expect(await breakerState(q)).toMatchObject({ state: 'half-open' });
          for (const job of others) await expectHeldBack(q, job.id, undefined);

          const gatesOpenedAt = Date.now();
          for (const gate of gates) gate.open();
          const probeEnd = await readAll(q, probe.id);
          expect(typesOf(probeEnd)).toEqual(['started', 'ran', 'completed']);
          for (const job of others) {
            const events = await readAll(q, job.id);
            expect(typesOf(events)).toEqual(['started', 'ran', 'completed']);
            // They start only once the probe's success closed the breaker (which happens just before its terminal event is written).
            expect(events[0].ts).toBeGreaterThanOrEqual(gatesOpenedAt);
          }
          expect(await breakerState(q)).toMatchObject({ state: 'closed', recentFailures: 0 });
          expect((await breakerState(q)).openUntil).toBeUndefined();
        });
      });

      it("the probe's failure opens the breaker for another cool-down; the next probe's success closes it", async () => {
        await withApp(breakerOn(1, 1_500), async (q) => {
          await failOnce(q);
          const first = await breakerState(q);
          expect(first.state).toBe('open');
          const probe = await failOnce(q);
          expect(probe[0].ts).toBeGreaterThanOrEqual(first.openUntil!);
          const reopened = await breakerState(q);
          expect(reopened.state).toBe('open');
          // The probe's failure is recorded after its start (a bound that holds however long the
          // attempt takes to write its terminal event after recording the failure).
          expect(reopened.openUntil).toBeGreaterThanOrEqual(probe[0].ts + 1_500);

          const next = await enqueue(q, JOBS.breaker, {});
          if (Date.now() < reopened.openUntil! - 1_000) {
            const info = await q.getJob(next.id, { owner: OWNER });
            expect(info).toMatchObject({
              state: 'queued',
              attempt: 0,
              waitingFor: { circuitBreaker: JOBS.breaker, until: reopened.openUntil },
            });
          }
          const events = await readAll(q, next.id);
          expect(typesOf(events)).toEqual(['started', 'ran', 'completed']);
          expect(events[0].ts).toBeGreaterThanOrEqual(reopened.openUntil!);
          expect(await breakerState(q)).toMatchObject({ state: 'closed', recentFailures: 0 });
        });
      });
    });

    describe('a large job', () => {
      it('1000 steps x 10 tokens: read completely and in order by paging and by follow, resumable anywhere', async () => {
        const steps = 1_000;
        const tokensPerStep = 10;
        const info = await enqueue(queue, JOBS.steps, { steps, tokensPerStep });

        const expected: Simplified[] = [['started', { attempt: 1 }]];
        for (let index = 1; index <= steps; index++) {
          expected.push(['step', { index, total: steps }]);
          for (let token = 1; token <= tokensPerStep; token++) {
            expected.push(['token', { step: index, index: token, text: `token ${token} of step ${index}` }]);
          }
        }
        expected.push(['completed', { result: { steps } }]);

        const paged: JobEvent[] = [];
        let cursor: string | undefined;
        let pages = 0;
        for (;;) {
          const page = await queue.readEvents(info.id, { owner: OWNER, after: cursor, waitMs: 5_000 });
          expect(page.events.length).toBeLessThanOrEqual(1_000);
          paged.push(...page.events);
          pages++;
          if (page.done) break;
          cursor = page.next;
        }
        expect(paged).toHaveLength(expected.length);
        expect(simplify(paged)).toEqual(expected);
        expect(new Set(paged.map((event) => event.id)).size).toBe(paged.length);
        expect(pages).toBeGreaterThanOrEqual(Math.ceil(expected.length / 1_000));

        expect(await follow(queue, info.id)).toEqual(paged);

        const random = seededRandom(20_240_601);
        const offsets = [0, paged.length - 2, paged.length - 1];
        for (let i = 0; i < 5; i++) offsets.push(Math.floor(random() * paged.length));
        for (const k of offsets) {
          expect(await readAll(queue, info.id, paged[k].id)).toEqual(paged.slice(k + 1));
        }
        for (const k of offsets.slice(3, 5)) {
          expect(await follow(queue, info.id, paged[k].id)).toEqual(paged.slice(k + 1));
        }
        expect(await readAll(queue, info.id, paged[500].id, 333)).toEqual(paged.slice(501));
      });
    });
  });
}
