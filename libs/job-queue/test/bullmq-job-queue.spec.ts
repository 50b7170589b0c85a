import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { JobQueue, JobQueueModule, UnknownJobNameError, type JobEvent, type JobQueueModuleOptions } from 'nestjs-job-streams';
import { createContractApp, describeJobQueueContract, nestContractHarness } from './contract/job-queue.contract.js';
import { JOBS } from './contract/test-handlers.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';

let redis: RedisServer | undefined;

describeJobQueueContract(
  'bullmq',
  nestContractHarness(
    () => {
      if (!redis) throw new Error('redis-server did not start');
      // A fresh prefix per application keeps tests apart on one server.
      return { backend: 'bullmq', redis: { url: redis.url, prefix: `c${randomUUID().slice(0, 8)}` }, shutdownGraceMs: 200 };
    },
    {
      setup: async () => {
        redis = await RedisServer.start();
      },
      teardown: async () => {
        await redis?.destroy();
      },
    },
  ),
);

@Module({})
class HandlerlessAppModule {
  static register(options: JobQueueModuleOptions): DynamicModule {
    return { module: HandlerlessAppModule, imports: [JobQueueModule.forRoot(options)] };
  }
}

async function eventsOf(queue: JobQueue, id: string): Promise<JobEvent[]> {
  const events: JobEvent[] = [];
  for await (const event of queue.follow(id, { owner: 'alice' })) events.push(event);
  return events;
}

describe('bullmq backend only: an api without the handler code (jobNames)', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(async () => {
    await server.destroy();
  });

  it('enqueues the names it declares, a worker with the handlers runs them, a worker without fails them, other names are refused', async () => {
    const redisOptions = { url: server.url, prefix: `n${randomUUID().slice(0, 8)}` };
    const api = await NestFactory.createApplicationContext(
      HandlerlessAppModule.register({ backend: 'bullmq', worker: false, jobNames: [JOBS.echo, 'nobody.handles'], redis: redisOptions }),
      { logger: false, abortOnError: false },
    );
    const worker = await createContractApp({ backend: 'bullmq', redis: redisOptions, shutdownGraceMs: 200 });
    try {
      const queue = api.get(JobQueue);

      const echo = await queue.enqueue(JOBS.echo, { hello: 'world' }, { owner: 'alice' });
      const echoed = await eventsOf(queue, echo.id);
      expect(echoed.map((event) => event.type)).toEqual(['started', 'completed']);
      expect(echoed[1].data).toEqual({ result: { id: echo.id, name: JOBS.echo, attempt: 1, data: { hello: 'world' } } });

      const orphan = await queue.enqueue('nobody.handles', {}, { owner: 'alice' });
      const failed = await eventsOf(queue, orphan.id);
      expect(failed.map((event) => event.type)).toEqual(['started', 'failed']);
      expect(failed[1].data).toEqual({ error: { message: 'No handler for job name "nobody.handles" in this worker' } });

      const refusal = await queue.enqueue(`${JOBS.echo}-typo`, {}, { owner: 'alice' }).catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(UnknownJobNameError);
      expect((refusal as UnknownJobNameError).knownNames).toEqual([JOBS.echo, 'nobody.handles']);
    } finally {
      await worker.close();
      await api.close();
    }
  });

  it('without jobNames, a process without handlers refuses every name', async () => {
    const api = await NestFactory.createApplicationContext(
      HandlerlessAppModule.register({
        backend: 'bullmq',
        worker: false,
        redis: { url: server.url, prefix: `n${randomUUID().slice(0, 8)}` },
      }),
      { logger: false, abortOnError: false },
    );
    try {
      const refusal = await api
        .get(JobQueue)
        .enqueue(JOBS.echo, {}, { owner: 'alice' })
        .catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(UnknownJobNameError);
      expect((refusal as Error).message).toBe(`No handler is registered for job name "${JOBS.echo}" (no handlers are registered)`);
    } finally {
      await api.close();
    }
  });
});

describe('bullmq backend only: order of the writes that end a job', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(async () => {
    await server.destroy();
  });

  /** Redis' MONITOR feed (every command in the order Redis runs it, those inside scripts included), as raw lines. */
  async function monitor(url: string): Promise<{ lines: string[]; close(): void }> {
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    await once(socket, 'connect');
    const lines: string[] = [];
    let rest = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      const parts = (rest + chunk).split('\r\n');
      rest = parts.pop()!;
      lines.push(...parts);
    });
    socket.write('MONITOR\r\n');
    return { lines, close: () => socket.destroy() };
  }

  it("a completed job's terminal event and BullMQ's record of its completion are written by one script", async () => {
    const prefix = `o${randomUUID().slice(0, 8)}`;
    const app = await createContractApp({ backend: 'bullmq', redis: { url: server.url, prefix }, shutdownGraceMs: 200 });
    const feed = await monitor(server.url);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push((await app.queue.enqueue(JOBS.echo, { i }, { owner: 'alice' })).id);
      for (const id of ids) expect((await eventsOf(app.queue, id)).at(-1)?.type).toBe('completed');
      const position = (pattern: string): number => feed.lines.findIndex((line) => line.includes(pattern));
      const ours = (id: string): number => position(`"XADD" "${new RedisKeys(prefix).events('jobs', id)}" "*" "type" "completed"`);
      const bullmqs = (id: string): number => position(`"XADD" "${prefix}:jobs:events" "*" "event" "completed" "jobId" "${id}"`);
      // The last lines may still be on their way.
      for (let tries = 0; ids.some((id) => ours(id) === -1 || bullmqs(id) === -1); tries++) {
        if (tries > 100) throw new Error(`MONITOR did not show both completions of every job:\n${feed.lines.slice(-20).join('\n')}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Nothing from a client between the two: both ran inside one script (MONITOR shows the
      // commands a script runs with the source `lua`), so no reader sees one without the other.
      for (const id of ids) {
        const [from, to] = [Math.min(ours(id), bullmqs(id)), Math.max(ours(id), bullmqs(id))];
        const between = feed.lines.slice(from, to + 1);
        expect({ id, outsideTheScript: between.filter((line) => !/^\+[\d.]+ \[\d+ lua\]/.test(line)) }).toEqual({
          id,
          outsideTheScript: [],
        });
      }
    } finally {
      feed.close();
      await app.close();
    }
  });
});
