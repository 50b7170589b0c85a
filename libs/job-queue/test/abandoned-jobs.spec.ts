import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidArgumentError, type JobEvent, type JobQueueModuleOptions } from 'nestjs-job-streams';
import { RedisServer } from '../../../test/support/redis-server.js';
import { createContractApp, type ContractApp } from './contract/job-queue.contract.js';
import { JOBS, createGate, openAllGates } from './contract/test-handlers.js';

/**
 * Jobs enqueued with `abandonAfterMs` are cancelled (reason `abandoned`) once no client has read
 * them for that long; reading them, on any instance and by any delivery, keeps them alive.
 */
const ABANDON_AFTER_MS = 1000;
/** The watch checks every quarter of `abandonAfterMs` (at least every 250 ms): the cancel comes within this bound. */
const BOUND_MS = ABANDON_AFTER_MS + ABANDON_AFTER_MS / 4 + 500;

describe.each(['memory', 'bullmq'] as const)('abandoned jobs (%s backend)', (backend) => {
  let redis: RedisServer | undefined;
  const apps: ContractApp[] = [];

  async function start(): Promise<ContractApp> {
    const options: JobQueueModuleOptions =
      backend === 'memory'
        ? { backend }
        : { backend, redis: { url: redis!.url, prefix: `a${randomUUID().slice(0, 8)}` }, shutdownGraceMs: 200 };
    const app = await createContractApp(options);
    apps.push(app);
    return app;
  }

  beforeAll(async () => {
    if (backend === 'bullmq') redis = await RedisServer.start();
  });

  afterEach(async () => {
    openAllGates();
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  afterAll(async () => {
    await redis?.destroy();
  });

  it('a running job nobody reads is cancelled as abandoned within the bound, and its signal fires', async () => {
    const { queue } = await start();
    const gate = createGate();
    const enqueuedAt = Date.now();
    const job = await queue.enqueue(JOBS.gated, { gate: gate.key }, { owner: 'alice', abandonAfterMs: ABANDON_AFTER_MS });
    await gate.entered;
    // Nothing reads it now; the handler waits for its gate or its signal.
    expect(await gate.finished).toMatchObject({ aborted: true });
    const info = await queue.getJob(job.id, { owner: 'alice' });
    expect(info.state).toBe('cancelled');
    expect(info.finishedAt! - enqueuedAt).toBeGreaterThanOrEqual(ABANDON_AFTER_MS);
    expect(info.finishedAt! - enqueuedAt).toBeLessThan(BOUND_MS);
    const page = await queue.readEvents(job.id, { owner: 'alice' });
    expect(page.events.at(-1)).toMatchObject({ type: 'cancelled', data: { reason: 'abandoned' } });
  });

  it('a job followed for three times its abandonAfterMs keeps running; once the follower leaves, it is abandoned', async () => {
    const { queue } = await start();
    const gate = createGate();
    const job = await queue.enqueue(JOBS.gated, { gate: gate.key }, { owner: 'alice', abandonAfterMs: ABANDON_AFTER_MS });
    const abort = new AbortController();
    const seen: JobEvent[] = [];
    const following = (async () => {
      for await (const event of queue.follow(job.id, { owner: 'alice', signal: abort.signal })) seen.push(event);
    })();
    await gate.entered;
    // A wait with the follower attached: the job must not be abandoned meanwhile.
    await delay(3 * ABANDON_AFTER_MS);
    expect((await queue.getJob(job.id, { owner: 'alice' })).state).toBe('running');
    const leftAt = Date.now();
    abort.abort();
    await following;
    expect(seen.map((event) => event.type)).not.toContain('cancelled');
    expect(await gate.finished).toMatchObject({ aborted: true });
    const info = await queue.getJob(job.id, { owner: 'alice' });
    expect(info.state).toBe('cancelled');
    expect(info.finishedAt! - leftAt).toBeLessThan(BOUND_MS);
  });

  it('polling it (each read well within abandonAfterMs) keeps it alive too; a job without abandonAfterMs is never abandoned', async () => {
    const { queue } = await start();
    const polled = createGate();
    const unwatched = createGate();
    const job = await queue.enqueue(JOBS.gated, { gate: polled.key }, { owner: 'alice', abandonAfterMs: ABANDON_AFTER_MS });
    const plain = await queue.enqueue(JOBS.gated, { gate: unwatched.key }, { owner: 'alice' });
    await Promise.all([polled.entered, unwatched.entered]);
    for (let elapsed = 0; elapsed < 3 * ABANDON_AFTER_MS; elapsed += ABANDON_AFTER_MS / 3) {
      await queue.readEvents(job.id, { owner: 'alice' });
      await delay(ABANDON_AFTER_MS / 3);
    }
    expect((await queue.getJob(job.id, { owner: 'alice' })).state).toBe('running');
    expect((await queue.getJob(plain.id, { owner: 'alice' })).state).toBe('running');
    polled.open();
    unwatched.open();
    expect(await polled.finished).toMatchObject({ aborted: false });
  });

  it('abandonAfterMs out of 1000..3600000 is refused at enqueue', async () => {
    const { queue } = await start();
    for (const abandonAfterMs of [999, 3_600_001, 1.5, Number.NaN]) {
      await expect(queue.enqueue(JOBS.echo, {}, { owner: 'alice', abandonAfterMs })).rejects.toBeInstanceOf(InvalidArgumentError);
    }
  });
});
