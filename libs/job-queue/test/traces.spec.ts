import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, Module, type DynamicModule, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule, Processor, WorkerHost } from '@nestjs/bullmq';
import { context, createTraceState, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import {
  JOB_TRACER_NAME,
  JobHandler,
  JobQueue,
  JobQueueModule,
  JobQueueWorker,
  type JobContext,
  type JobEvent,
  type JobQueueModuleOptions,
} from 'nestjs-job-streams';
import { RedisServer } from '../../../test/support/redis-server.js';
import { TestTracing } from '../../../test/support/test-tracing.js';

// Registered before anything runs, as an application's instrumentation file does.
const tracing = TestTracing.register();
/** The tracer of "user code": the handler's and the processor's own spans. */
const userTracer = trace.getTracer('traces-spec');

const WORK = 'traced.work';
const REPORTS = 'traced-reports';

@Injectable()
class TracedHandlers {
  @JobHandler(WORK)
  async work(context: JobContext<{ fail?: boolean }>): Promise<{ ok: true }> {
    await userTracer.startActiveSpan('handler.step', async (span) => {
      await context.emit('step', { index: 1 });
      span.end();
    });
    if (context.data.fail) throw new Error('traced failure');
    return { ok: true };
  }
}

/** A plain @nestjs/bullmq processor (on bullmq it runs on JobQueueWorker; on memory the library runs it). */
@Processor(REPORTS)
class TracedReportProcessor extends WorkerHost {
  async process(job: Job<{ pages: number }>): Promise<{ pages: number }> {
    await userTracer.startActiveSpan('processor.page', async (span) => {
      await job.updateProgress({ page: 1, pages: job.data.pages });
      await job.log(`page 1 of ${job.data.pages}`);
      span.end();
    });
    return { pages: job.data.pages };
  }
}

@Module({})
class TracedAppModule {
  static register(options: JobQueueModuleOptions): DynamicModule {
    const bull: DynamicModule[] = [];
    if (options.backend === 'bullmq') {
      BullModule.workerClass = JobQueueWorker;
      bull.push(
        BullModule.forRoot({ connection: { url: options.redis!.url! }, prefix: options.redis!.prefix }),
        BullModule.registerQueue({ name: REPORTS }),
      );
    }
    return {
      module: TracedAppModule,
      imports: [...bull, JobQueueModule.forRoot(options)],
      providers: [TracedHandlers, TracedReportProcessor],
    };
  }
}

/** A handlerless api (bullmq, `worker: false`): jobs wait until a worker app runs them. */
@Module({})
class ApiOnlyModule {
  static register(options: JobQueueModuleOptions): DynamicModule {
    return { module: ApiOnlyModule, imports: [JobQueueModule.forRoot({ ...options, worker: false, jobNames: [WORK] })] };
  }
}

async function allEvents(queue: JobQueue, id: string, options: { queue?: string } = {}): Promise<JobEvent[]> {
  const events: JobEvent[] = [];
  for await (const event of queue.follow(id, { owner: 'alice', ...options })) events.push(event);
  return events;
}

function spanOfJob(name: string, jobId: string): (span: ReadableSpan) => boolean {
  return (span) =>
    span.name === name && span.instrumentationScope.name === JOB_TRACER_NAME && span.attributes['messaging.message.id'] === jobId;
}

/** Runs `work` inside a span `name` (a stand-in for the request that enqueues), returning its span context too. */
async function inSpan<T>(name: string, work: () => Promise<T>): Promise<{ value: T; traceId: string; spanId: string }> {
  return userTracer.startActiveSpan(name, async (span) => {
    try {
      const value = await work();
      return { value, ...span.spanContext() };
    } finally {
      span.end();
    }
  });
}

let redis: RedisServer;

beforeAll(async () => {
  redis = await RedisServer.start();
});

afterAll(async () => {
  await redis?.destroy();
  await tracing.shutdown();
});

function optionsFor(backend: 'memory' | 'bullmq'): JobQueueModuleOptions {
  return backend === 'memory'
    ? { backend: 'memory' }
    : { backend: 'bullmq', redis: { url: redis.url, prefix: `t${randomUUID().slice(0, 8)}` }, shutdownGraceMs: 200 };
}

describe.each(['memory', 'bullmq'] as const)('traces (%s backend)', (backend) => {
  let app: INestApplicationContext;
  let queue: JobQueue;

  beforeAll(async () => {
    app = await NestFactory.createApplicationContext(TracedAppModule.register(optionsFor(backend)), { logger: false, abortOnError: false });
    queue = app.get(JobQueue);
  });

  afterAll(async () => {
    await app?.close();
  });

  it('a handler job enqueued inside a span: enqueue span under it, attempt span under the enqueue, the handler spans under the attempt, the trace id on every event', async () => {
    const request = await inSpan('request', () => queue.enqueue(WORK, {}, { owner: 'alice' }));
    const jobId = request.value.id;

    const followed = await allEvents(queue, jobId);
    expect(followed.map((event) => event.type)).toEqual(['started', 'step', 'completed']);
    for (const event of followed) expect(event.traceId).toBe(request.traceId);
    const polled = await queue.readEvents(jobId, { owner: 'alice' });
    expect(polled.events.map((event) => event.traceId)).toEqual([request.traceId, request.traceId, request.traceId]);

    const enqueue = await tracing.waitForSpan(spanOfJob('enqueue', jobId), 'enqueue');
    const attempt = await tracing.waitForSpan(spanOfJob('attempt', jobId), 'attempt');
    const finish = await tracing.waitForSpan(spanOfJob('finish', jobId), 'finish');
    const inner = tracing
      .spans()
      .find((span) => span.name === 'handler.step' && span.parentSpanContext?.spanId === attempt.spanContext().spanId);

    expect(enqueue.kind).toBe(SpanKind.PRODUCER);
    expect(enqueue.spanContext().traceId).toBe(request.traceId);
    expect(enqueue.parentSpanContext?.spanId).toBe(request.spanId);
    expect(enqueue.attributes).toMatchObject({
      'messaging.system': backend,
      'messaging.operation.type': 'send',
      'messaging.destination.name': 'jobs',
      'job.name': WORK,
      'messaging.message.id': jobId,
    });

    expect(attempt.kind).toBe(SpanKind.CONSUMER);
    expect(attempt.spanContext().traceId).toBe(request.traceId);
    expect(attempt.parentSpanContext?.spanId).toBe(enqueue.spanContext().spanId);
    expect(attempt.attributes).toMatchObject({
      'messaging.system': backend,
      'messaging.operation.type': 'process',
      'messaging.destination.name': 'jobs',
      'job.name': WORK,
      'messaging.message.id': jobId,
      'job.attempt': 1,
    });
    expect(attempt.status.code).not.toBe(SpanStatusCode.ERROR);

    expect(inner).toBeDefined();
    expect(inner!.spanContext().traceId).toBe(request.traceId);
    expect(finish.parentSpanContext?.spanId).toBe(attempt.spanContext().spanId);
    expect(finish.attributes).toMatchObject({ 'job.state': 'completed', 'messaging.operation.type': 'settle', 'job.attempt': 1 });
  });

  it('a failing attempt records the exception and the error status on its span', async () => {
    const request = await inSpan('request', () => queue.enqueue(WORK, { fail: true }, { owner: 'alice', attempts: 1 }));
    const events = await allEvents(queue, request.value.id);
    expect(events.map((event) => event.type)).toEqual(['started', 'step', 'failed']);
    expect(events.every((event) => event.traceId === request.traceId)).toBe(true);

    const attempt = await tracing.waitForSpan(spanOfJob('attempt', request.value.id), 'attempt');
    expect(attempt.status).toEqual({ code: SpanStatusCode.ERROR, message: 'traced failure' });
    expect(attempt.events.find((event) => event.name === 'exception')?.attributes?.['exception.message']).toBe('traced failure');
    const finish = await tracing.waitForSpan(spanOfJob('finish', request.value.id), 'finish');
    expect(finish.attributes['job.state']).toBe('failed');
  });

  it('a processor job (updateProgress, log) gets the attempt span and its events the trace id', async () => {
    const request = await inSpan('request', () => queue.enqueue('report', { pages: 1 }, { owner: 'alice', queue: REPORTS }));
    const jobId = request.value.id;
    const events = await allEvents(queue, jobId, { queue: REPORTS });
    expect(events.map((event) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ['progress', { page: 1, pages: 1 }],
      ['log', { message: 'page 1 of 1' }],
      ['completed', { result: { pages: 1 } }],
    ]);
    for (const event of events) expect(event.traceId).toBe(request.traceId);

    const enqueue = await tracing.waitForSpan(spanOfJob('enqueue', jobId), 'enqueue');
    const attempt = await tracing.waitForSpan(spanOfJob('attempt', jobId), 'attempt');
    expect(attempt.parentSpanContext?.spanId).toBe(enqueue.spanContext().spanId);
    expect(attempt.attributes).toMatchObject({ 'messaging.destination.name': REPORTS, 'job.name': 'report', 'job.attempt': 1 });
    const page = tracing
      .spans()
      .find((span) => span.name === 'processor.page' && span.parentSpanContext?.spanId === attempt.spanContext().spanId);
    expect(page?.spanContext().traceId).toBe(request.traceId);
  });

  it('a remote parent with a tracestate (as an incoming request has): the attempt gets the same trace, flags and tracestate', async () => {
    const traceId = randomUUID().replace(/-/g, '');
    const remote = trace.setSpanContext(context.active(), {
      traceId,
      spanId: 'a1b2c3d4e5f60718',
      traceFlags: 1,
      isRemote: true,
      traceState: createTraceState('vendor=opaque,other=1'),
    });
    const info = await context.with(remote, () => queue.enqueue(WORK, {}, { owner: 'alice' }));
    const events = await allEvents(queue, info.id);
    expect(events.every((event) => event.traceId === traceId)).toBe(true);
    const enqueue = await tracing.waitForSpan(spanOfJob('enqueue', info.id), 'enqueue');
    expect(enqueue.parentSpanContext?.spanId).toBe('a1b2c3d4e5f60718');
    const attempt = await tracing.waitForSpan(spanOfJob('attempt', info.id), 'attempt');
    expect(attempt.parentSpanContext).toMatchObject({ traceId, spanId: enqueue.spanContext().spanId, traceFlags: 1, isRemote: true });
    expect(attempt.parentSpanContext?.traceState?.serialize()).toBe('vendor=opaque,other=1');
    expect(attempt.spanContext().traceState?.serialize()).toBe('vendor=opaque,other=1');
  });

  it('a job enqueued outside any span: no traceId on its events, no enqueue span, and it runs as before', async () => {
    const info = await queue.enqueue(WORK, {}, { owner: 'alice' });
    const events = await allEvents(queue, info.id);
    expect(events.map((event) => event.type)).toEqual(['started', 'step', 'completed']);
    for (const event of events) expect(Object.keys(event).sort()).toEqual(['data', 'id', 'ts', 'type']);
    const page = await queue.readEvents(info.id, { owner: 'alice' });
    expect(page.events.every((event) => !('traceId' in event))).toBe(true);

    // The attempt still has a span (a trace of its own); nothing was recorded for the enqueue.
    const attempt = await tracing.waitForSpan(spanOfJob('attempt', info.id), 'attempt');
    expect(attempt.parentSpanContext).toBeUndefined();
    expect(tracing.spans().filter(spanOfJob('enqueue', info.id))).toEqual([]);
  });
});

describe('traces (bullmq backend, api and worker apart)', () => {
  it('a follow and a long-poll that start before the job does give every event the trace id; the attempt span on the worker is the enqueue span’s child', async () => {
    const options = optionsFor('bullmq');
    const api = await NestFactory.createApplicationContext(ApiOnlyModule.register(options), { logger: false, abortOnError: false });
    let worker: INestApplicationContext | undefined;
    try {
      const queue = api.get(JobQueue);
      const request = await inSpan('request', () => queue.enqueue(WORK, {}, { owner: 'alice' }));
      const jobId = request.value.id;
      // Nothing runs the job yet: both reads start on an empty page.
      const first = await queue.readEvents(jobId, { owner: 'alice' });
      expect(first.events).toEqual([]);
      const followed = allEvents(queue, jobId);
      const polled = queue.readEvents(jobId, { owner: 'alice', waitMs: 10_000 });

      worker = await NestFactory.createApplicationContext(TracedAppModule.register(options), { logger: false, abortOnError: false });
      const events = await followed;
      expect(events.map((event) => event.type)).toEqual(['started', 'step', 'completed']);
      for (const event of events) expect(event.traceId).toBe(request.traceId);
      const page = await polled;
      expect(page.events.length).toBeGreaterThan(0);
      for (const event of page.events) expect(event.traceId).toBe(request.traceId);

      const enqueue = await tracing.waitForSpan(spanOfJob('enqueue', jobId), 'enqueue');
      const attempt = await tracing.waitForSpan(spanOfJob('attempt', jobId), 'attempt');
      expect(attempt.parentSpanContext?.spanId).toBe(enqueue.spanContext().spanId);
      expect(attempt.parentSpanContext?.isRemote).toBe(true);
      expect(attempt.spanContext().traceId).toBe(request.traceId);
    } finally {
      await worker?.close();
      await api.close();
    }
  });
});

/** An api (bullmq, no worker) with a queue that only a plain BullMQ `Worker`, without this module, processes. */
@Module({})
class ForeignQueueApiModule {
  static register(url: string, prefix: string): DynamicModule {
    return {
      module: ForeignQueueApiModule,
      imports: [
        BullModule.forRoot({ connection: { url }, prefix }),
        BullModule.registerQueue({ name: 'foreign-traced' }),
        JobQueueModule.forRoot({ backend: 'bullmq', worker: false, queues: ['foreign-traced'] }),
      ],
    };
  }
}

describe('traces (bullmq backend, a foreign worker)', () => {
  it("a job of a worker without the module: no attempt span (its context does not reach it), but the bridged events carry the job's trace id", async () => {
    const prefix = `f${randomUUID().slice(0, 8)}`;
    const admin = new Redis(redis.url);
    const api = await NestFactory.createApplicationContext(ForeignQueueApiModule.register(redis.url, prefix), {
      logger: false,
      abortOnError: false,
    });
    let worker: Worker | undefined;
    try {
      await api.init();
      // The bridge reads BullMQ's events stream once it holds the lease and recorded where it starts.
      while (!(await admin.get(`${prefix}:{bridge:foreign-traced}:position`))) await delay(20);
      worker = new Worker(
        'foreign-traced',
        async (job: Job<{ pages: number }>) => {
          await job.updateProgress({ page: 1 });
          return { pages: job.data.pages };
        },
        { connection: { url: redis.url }, prefix },
      );
      const queue = api.get(JobQueue);
      const request = await inSpan('request', () => queue.enqueue('report', { pages: 1 }, { owner: 'alice', queue: 'foreign-traced' }));
      const events = await allEvents(queue, request.value.id, { queue: 'foreign-traced' });
      expect(events.map((event) => [event.type, event.data])).toEqual([
        ['started', { attempt: 1 }],
        ['progress', { page: 1 }],
        ['completed', { result: { pages: 1 } }],
      ]);
      for (const event of events) expect(event.traceId).toBe(request.traceId);
      await tracing.waitForSpan(spanOfJob('enqueue', request.value.id), 'enqueue');
      expect(tracing.spans().filter(spanOfJob('attempt', request.value.id))).toEqual([]);
    } finally {
      await worker?.close();
      await api.close();
      admin.disconnect();
    }
  });
});
