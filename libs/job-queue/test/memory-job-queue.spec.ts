import 'reflect-metadata';
import { describe, expect, it } from '@jest/globals';
import {
  InvalidJobQueueOptionsError,
  JobQueueUnavailableError,
  jobQueueOptionsFromEnv,
  validateJobQueueOptions,
  type JobQueueModuleOptions,
} from 'nestjs-job-streams';
import { createContractApp, describeJobQueueContract, nestContractHarness } from './contract/job-queue.contract.js';
import { JOBS, createGate, reportOf, uniqueKey, type FloodReport } from './contract/test-handlers.js';

describeJobQueueContract(
  'memory',
  nestContractHarness(() => ({ backend: 'memory' })),
);

describe('memory backend only', () => {
  describe('options are validated at start', () => {
    async function startFails(options: unknown): Promise<InvalidJobQueueOptionsError> {
      let failure: unknown;
      try {
        const app = await createContractApp(options as JobQueueModuleOptions);
        await app.close();
      } catch (error) {
        failure = error;
      }
      expect(failure).toBeInstanceOf(InvalidJobQueueOptionsError);
      return failure as InvalidJobQueueOptionsError;
    }

    it('an unknown backend names it and the valid values', async () => {
      const error = await startFails({ backend: 'nope' });
      expect(error.message).toContain('"backend" must be one of "memory", "bullmq" (got "nope")');
      expect(() => validateJobQueueOptions({ backend: 'nope' })).toThrow('"backend" must be one of "memory", "bullmq" (got "nope")');
      expect(() => validateJobQueueOptions(undefined)).toThrow(InvalidJobQueueOptionsError);
    });

    it('worker: false is rejected on memory, where nothing else could run the jobs', async () => {
      const error = await startFails({ backend: 'memory', worker: false });
      expect(error.problems).toHaveLength(1);
      expect(error.message).toMatch(/"worker": false needs backend "bullmq"/);
      expect(validateJobQueueOptions({ backend: 'bullmq', worker: false }).worker).toBe(false);
    });

    it('bad numeric options name the option and its rule, all at once', async () => {
      const error = await startFails({
        backend: 'memory',
        concurrency: 0,
        retentionMs: 999,
        maxEventsPerJob: 9,
        maxEventBytes: 255,
        defaultAttempts: 1.5,
      });
      expect(error.problems).toEqual([
        '"concurrency" must be an integer from 1 to 1000 (got 0)',
        '"retentionMs" must be an integer from 1000 to 2592000000 (got 999)',
        '"maxEventsPerJob" must be an integer from 10 to 10000000 (got 9)',
        '"maxEventBytes" must be an integer from 256 to 16777216 (got 255)',
        '"defaultAttempts" must be an integer from 1 to 100 (got 1.5)',
      ]);
      for (const [name, value] of [
        ['concurrency', 1001],
        ['concurrency', '10'],
        ['retentionMs', -1],
        ['maxEventsPerJob', Number.NaN],
        ['maxEventBytes', 16 * 1024 * 1024 + 1],
      ] as const) {
        expect(() => validateJobQueueOptions({ backend: 'memory', [name]: value })).toThrow(`"${name}" must be an integer from`);
      }
    });

    it('jobNames must be a list of names; JOB_NAMES is read comma-separated', () => {
      for (const jobNames of ['a,b', [''], ['a', 7], ['x'.repeat(201)]]) {
        expect(() => validateJobQueueOptions({ backend: 'bullmq', jobNames })).toThrow('"jobNames" must be an array of job names');
      }
      expect(validateJobQueueOptions({ backend: 'bullmq', jobNames: ['a', 'b', 'a'] }).jobNames).toEqual(['a', 'b']);
      expect(validateJobQueueOptions({ backend: 'bullmq' }).jobNames).toEqual([]);
      const env: Record<string, string> = { JOB_QUEUE_BACKEND: 'bullmq', JOB_NAMES: ' report, export ,' };
      const fromEnv = (): JobQueueModuleOptions => jobQueueOptionsFromEnv({ get: <T>(key: string) => env[key] as T | undefined });
      expect(validateJobQueueOptions(fromEnv()).jobNames).toEqual(['report', 'export']);
      env.JOB_NAMES = '';
      expect(validateJobQueueOptions(fromEnv()).jobNames).toEqual([]);
    });

    it('circuit breaker options name the option and its rule; JOB_CIRCUIT_BREAKER is read as default and per-name entries', async () => {
      const error = await startFails({
        backend: 'memory',
        circuitBreaker: { failures: 0, windowMs: 999, coolDownMs: 5000 },
        circuitBreakers: { build: { failures: 3, windowMs: 10_000, coolDownMs: 99, extra: 1 }, report: true },
      });
      expect(error.problems).toEqual([
        '"circuitBreaker.failures" must be an integer from 1 to 100000 (got 0)',
        '"circuitBreaker.windowMs" must be an integer from 1000 to 86400000 (got 999)',
        '"circuitBreakers.build" has unknown fields "extra"',
        '"circuitBreakers.build.coolDownMs" must be an integer from 100 to 86400000 (got 99)',
        '"circuitBreakers.report" must be an object { failures, windowMs, coolDownMs } (got true)',
      ]);
      expect(() => validateJobQueueOptions({ backend: 'memory', circuitBreakers: [] })).toThrow(
        '"circuitBreakers" must be an object of job name to breaker options or false (got an array)',
      );
      const resolved = validateJobQueueOptions({
        backend: 'memory',
        circuitBreaker: { failures: 5, windowMs: 60_000, coolDownMs: 30_000 },
        circuitBreakers: { report: false },
      });
      expect(resolved).toMatchObject({
        circuitBreaker: { failures: 5, windowMs: 60_000, coolDownMs: 30_000 },
        circuitBreakers: { report: false },
      });
      expect(validateJobQueueOptions({ backend: 'memory' })).toMatchObject({ circuitBreaker: undefined, circuitBreakers: {} });

      const env: Record<string, string> = { JOB_CIRCUIT_BREAKER: ' 5,60000,30000 ; build=3,10000,5000; report=off' };
      const fromEnv = (): JobQueueModuleOptions => jobQueueOptionsFromEnv({ get: <T>(key: string) => env[key] as T | undefined });
      expect(validateJobQueueOptions(fromEnv())).toMatchObject({
        circuitBreaker: { failures: 5, windowMs: 60_000, coolDownMs: 30_000 },
        circuitBreakers: { build: { failures: 3, windowMs: 10_000, coolDownMs: 5_000 }, report: false },
      });
      env.JOB_CIRCUIT_BREAKER = 'build=3,0,5000';
      expect(() => validateJobQueueOptions(fromEnv())).toThrow(
        '"circuitBreakers.build.windowMs" must be an integer from 1000 to 86400000 (got 0)',
      );
      for (const bad of ['5,60000', 'build=a,b,c', '=3,1000,1000', '1,1000,1000;2,1000,1000', 'x=off;x=off']) {
        env.JOB_CIRCUIT_BREAKER = bad;
        expect(fromEnv).toThrow(InvalidJobQueueOptionsError);
        expect(fromEnv).toThrow('JOB_CIRCUIT_BREAKER must be "failures,windowMs,coolDownMs"');
      }
      env.JOB_CIRCUIT_BREAKER = '';
      expect(validateJobQueueOptions(fromEnv()).circuitBreaker).toBeUndefined();
    });

    it('the smallest allowed values start, with defaults filled in', async () => {
      const options = { backend: 'memory', concurrency: 1, retentionMs: 1_000, maxEventsPerJob: 10, maxEventBytes: 256 } as const;
      expect(validateJobQueueOptions(options)).toMatchObject({
        ...options,
        worker: true,
        defaultAttempts: 1,
        redis: { url: 'redis://127.0.0.1:6379', prefix: 'jq' },
      });
      const app = await createContractApp(options);
      expect(app.queue.backend).toBe('memory');
      await expect(app.queue.checkHealth()).resolves.toBeUndefined();
      await app.close();
    });
  });

  it('at the event cap, emit itself throws EventLimitExceededError, with the signal already fired', async () => {
    const app = await createContractApp({ backend: 'memory', maxEventsPerJob: 10 });
    try {
      const key = uniqueKey('flood');
      const info = await app.queue.enqueue(JOBS.flood, { key, count: 50 }, { owner: 'alice' });
      expect(await reportOf<FloodReport>(key)).toMatchObject({
        emittedBeforeError: 8,
        abortedAtError: true,
        error: { name: 'EventLimitExceededError', eventLimit: true },
      });
      const events = [];
      for await (const event of app.queue.follow(info.id)) events.push(event);
      expect(events).toHaveLength(10);
      expect(events[9]).toMatchObject({
        type: 'failed',
        data: { error: { message: 'The job emitted more events than maxEventsPerJob (10) allows' } },
      });
    } finally {
      await app.close();
    }
  });

  it('shutdown aborts running handlers, ends waiting reads, and makes the queue unavailable', async () => {
    const app = await createContractApp({ backend: 'memory' });
    const { queue } = app;
    const gate = createGate();
    const info = await queue.enqueue(JOBS.gated, { gate: gate.key }, { owner: 'alice' });
    await gate.entered;
    const events = (await queue.readEvents(info.id)).events;
    const read = queue.readEvents(info.id, { after: events[events.length - 1].id, waitMs: 10_000 });
    const started = performance.now();
    await app.close();
    expect(await gate.finished).toMatchObject({ aborted: true });
    await expect(read).rejects.toBeInstanceOf(JobQueueUnavailableError);
    expect(performance.now() - started).toBeLessThan(2_000);
    await expect(queue.checkHealth()).rejects.toBeInstanceOf(JobQueueUnavailableError);
    await expect(queue.enqueue(JOBS.echo, {}, { owner: 'alice' })).rejects.toBeInstanceOf(JobQueueUnavailableError);
  });
});
