import 'reflect-metadata';
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { FlowProducer, Queue, QueueEvents, Worker, type Job, type Processor } from 'bullmq';
import { Redis } from 'ioredis';
import { JobStreamsQueue, jobStreamsBackend, type JobEvent, type JobQueue } from 'nestjs-job-streams';
import { scriptSource } from '../src/backends/bullmq/job-scripts.js';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import { createContractApp, type ContractApp } from './contract/job-queue.contract.js';
import { pollUntil } from '../../../test/support/poll-until.js';
import { RedisMonitor, type MonitoredCommand } from '../../../test/support/redis-monitor.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { signal } from './support/signal.js';

/**
 * A plain BullMQ `Worker` given `jobStreamsBackend()` (no `JobQueueWorker`, no bridge of its
 * own) is bridged by its backend alone: `started` with BullMQ's move to active, each
 * `updateProgress` / `log` with BullMQ's script of the call, the terminal event with the move to
 * finished, each one script. An app of the module leads the foreign-worker bridge of the queue
 * meanwhile: a job is never bridged twice. BullMQ's view of the jobs is read through its own API
 * and compared with a plain `Worker` on BullMQ's default backend.
 */
describe('a plain BullMQ Worker with jobStreamsBackend()', () => {
  let server: RedisServer;
  let admin: Redis;
  let prefix: string;
  let app: ContractApp;
  let jobQueue: JobQueue;
  const closing: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
  });

  afterEach(async () => {
    await Promise.all(closing.splice(0).map((part) => part.close()));
  });

  afterAll(async () => {
    admin?.disconnect();
    await server?.destroy();
  });

  const connection = (): { url: string } => ({ url: server.url });

  /** An app of the module whose foreign-worker bridge leads `queues` (as an api instance would). */
  async function startApp(queues: string[]): Promise<void> {
    prefix = `p${randomUUID().slice(0, 8)}`;
    app = await createContractApp({ backend: 'bullmq', redis: { url: server.url, prefix }, queues, shutdownGraceMs: 200 });
    closing.push(app);
    jobQueue = app.queue;
    for (const name of queues) {
      await pollUntil(
        async () => jobQueue.bridgeStatus().some((status) => status.queue === name && status.leading),
        (leading) => leading,
      );
    }
  }

  function queue(name: string): Queue {
    const made = new Queue(name, { connection: connection(), prefix });
    closing.push(made);
    return made;
  }

  function worker(name: string, processor: Processor, bridged: boolean, opts: Record<string, unknown> = {}): Worker {
    const made = bridged
      ? new Worker(name, processor, { connection: connection(), prefix, ...opts }, jobStreamsBackend())
      : new Worker(name, processor, { connection: connection(), prefix, ...opts });
    closing.push(made);
    return made;
  }

  /** The job's stream to its end, read with system access (a job added without the module has no owner). */
  async function eventsOf(name: string, id: string): Promise<Array<[string, unknown]>> {
    const events: JobEvent[] = [];
    for await (const event of jobQueue.follow(id, { queue: name })) events.push(event);
    return events.map((event) => [event.type, event.data]);
  }

  /**
   * Each write to the stream of job `id` of `queueName`, in order: its event type, how the script
   * that wrote it was sent, and whether BullMQ's own write of the same step ran in that script (no
   * client command in between: MONITOR lists a script's commands right after it).
   */
  function writesOf(monitor: RedisMonitor, queueName: string, id: string) {
    const ours = new RedisKeys(prefix).events(queueName, id);
    const bullEvents = `${prefix}:${queueName}:events`;
    const bullEvent = (type: string) => (command: MonitoredCommand) =>
      command.name === 'XADD' && command.args[0] === bullEvents && command.args.includes(type) && command.args.includes(id);
    const bullWrites: Record<string, (command: MonitoredCommand) => boolean> = {
      started: bullEvent('active'),
      progress: bullEvent('progress'),
      log: (command) => command.name === 'RPUSH' && command.args[0] === `${prefix}:${queueName}:${id}:logs`,
      completed: bullEvent('completed'),
      failed: bullEvent('failed'),
    };
    const writes = monitor.commands.flatMap((command, at) => (command.name === 'XADD' && command.args[0] === ours ? [at] : []));
    return writes.map((at) => {
      let sent = at;
      while (sent > 0 && monitor.commands[sent].source === 'lua') sent--;
      const type = monitor.commands[at].args[monitor.commands[at].args.indexOf('type') + 1];
      const script = monitor.commands.slice(sent, at + 1);
      // EVAL after a script flush, EVALSHA once loaded: one script either way.
      return { type, sentAs: script[0].name.replace('EVALSHA', 'EVAL'), withBullMqWrite: script.some(bullWrites[type] ?? (() => false)) };
    });
  }

  /** What {@link writesOf} shows when each event of `types` was written inside BullMQ's script. */
  const withBullMqWrites = (types: string[]) => types.map((type) => ({ type, sentAs: 'EVAL', withBullMqWrite: true }));

  /** True when Redis has ever loaded the module's script `name` (run alone, not inside BullMQ's). */
  async function ranAlone(name: string): Promise<boolean> {
    const sha = createHash('sha1').update(scriptSource(name)).digest('hex');
    const [exists] = (await admin.script('EXISTS', sha)) as number[];
    return exists === 1;
  }

  /** What BullMQ says of a job, through its own API. */
  async function bullView(from: Queue, id: string): Promise<Record<string, unknown>> {
    const job = (await from.getJob(id))!;
    return {
      state: await job.getState(),
      progress: job.progress,
      returnvalue: job.returnvalue,
      failedReason: job.failedReason,
      attemptsMade: job.attemptsMade,
      logs: (await from.getJobLogs(id)).logs,
    };
  }

  /** Resolves when `worker` ends job `id` for good (completed, or failed with no retry left). */
  function ended(on: Worker, id: string): Promise<void> {
    return new Promise((resolve) => {
      on.on('completed', (job) => job.id === id && resolve());
      on.on('failed', (job) => job?.id === id && job.finishedOn !== undefined && resolve());
    });
  }

  /** Two pages, then the result; a failure on the first try when the job says so. */
  const pages: Processor = async (job: Job<{ failFirst?: boolean; failAlways?: boolean }>) => {
    await job.updateProgress({ page: 1, pages: 2 });
    await job.log(`page 1 (try ${job.attemptsMade + 1})`);
    if (job.data.failAlways || (job.data.failFirst && job.attemptsMade === 0)) throw new Error('printer jammed');
    await job.updateProgress({ page: 2, pages: 2 });
    return { pages: 2 };
  };

  it('writes started, every call and the terminal event, each inside BullMQ’s own script, once', async () => {
    await startApp(['plain']);
    await admin.script('FLUSH');
    const plain = queue('plain');
    const running = worker('plain', pages, true);
    const monitor = await RedisMonitor.start(server.url);
    try {
      const job = await plain.add('print', {});
      const done = ended(running, job.id!);
      expect(await eventsOf('plain', job.id!)).toEqual([
        ['started', { attempt: 1 }],
        ['progress', { page: 1, pages: 2 }],
        ['log', { message: 'page 1 (try 1)' }],
        ['progress', { page: 2, pages: 2 }],
        ['completed', { result: { pages: 2 } }],
      ]);
      await done;
      await monitor.caughtUp(admin);
      expect(writesOf(monitor, 'plain', job.id!)).toEqual(withBullMqWrites(['started', 'progress', 'log', 'progress', 'completed']));
      expect({
        startAttempt: await ranAlone('start-attempt'),
        appendEvents: await ranAlone('append-events'),
        finishJob: await ranAlone('finish-job'),
      }).toEqual({ startAttempt: false, appendEvents: false, finishJob: false });
    } finally {
      monitor.stop();
    }
  });

  it('retries show one started per attempt, a final failure its error; BullMQ’s view is as without the module', async () => {
    await startApp(['with', 'without']);
    const views: Record<string, unknown[]> = {};
    for (const name of ['with', 'without']) {
      const added = queue(name);
      const running = worker(name, pages, name === 'with');
      const retried = await added.add('print', { failFirst: true }, { attempts: 2 });
      const failed = await added.add('print', { failAlways: true }, { attempts: 1 });
      await Promise.all([ended(running, retried.id!), ended(running, failed.id!)]);
      views[name] = [await bullView(added, retried.id!), await bullView(added, failed.id!)];
      if (name === 'with') {
        expect(await eventsOf(name, retried.id!)).toEqual([
          ['started', { attempt: 1 }],
          ['progress', { page: 1, pages: 2 }],
          ['log', { message: 'page 1 (try 1)' }],
          ['started', { attempt: 2 }],
          ['progress', { page: 1, pages: 2 }],
          ['log', { message: 'page 1 (try 2)' }],
          ['progress', { page: 2, pages: 2 }],
          ['completed', { result: { pages: 2 } }],
        ]);
        expect(await eventsOf(name, failed.id!)).toEqual([
          ['started', { attempt: 1 }],
          ['progress', { page: 1, pages: 2 }],
          ['log', { message: 'page 1 (try 1)' }],
          ['failed', { error: { message: 'printer jammed' } }],
        ]);
      }
    }
    expect(views.with).toEqual(views.without);
    expect(views.with[0]).toMatchObject({ state: 'completed', attemptsMade: 2, progress: { page: 2, pages: 2 } });
  });

  it('a retry after a backoff reads queued meanwhile, and the job BullMQ would fetch with the retry starts as any other', async () => {
    await startApp(['backoff']);
    const added = queue('backoff');
    // Both wait before the worker starts: the first fails, and BullMQ's move of it to delayed
    // would hand the worker the second in the same command.
    const retried = await added.add('print', { failFirst: true }, { attempts: 2, backoff: { type: 'fixed', delay: 1000 } });
    const next = await added.add('print', {});
    const running = worker('backoff', pages, true);
    const meta = new RedisKeys(prefix).meta('backoff', retried.id!);
    const stateAtRetry = new Promise<string | null>((resolve) =>
      running.on('failed', (job) => job?.id === retried.id && resolve(admin.hget(meta, 'state'))),
    );
    await Promise.all([ended(running, retried.id!), ended(running, next.id!)]);
    expect(await stateAtRetry).toBe('queued');
    expect((await eventsOf('backoff', retried.id!)).map(([type]) => type)).toEqual([
      'started',
      'progress',
      'log',
      'started',
      'progress',
      'log',
      'progress',
      'completed',
    ]);
    expect((await eventsOf('backoff', next.id!)).map(([type]) => type)).toEqual(['started', 'progress', 'log', 'progress', 'completed']);
  });

  it('a JobStreamsQueue’s add writes the job’s metadata in BullMQ’s add script; addBulk and duplicate ids stay BullMQ’s', async () => {
    await startApp(['added']);
    const added = new JobStreamsQueue('added', { connection: connection(), prefix });
    closing.push(added);
    const keys = new RedisKeys(prefix);
    const monitor = await RedisMonitor.start(server.url);
    let job: Job;
    try {
      job = await added.add('print', {}, { attempts: 3, jobId: 'report-1' });
      // Read from Redis directly: a read through the module would give the job metadata by itself.
      expect(await admin.hgetall(keys.meta('added', job.id!))).toMatchObject({
        name: 'print',
        owner: '',
        state: 'queued',
        maxAttempts: '3',
      });
      await monitor.caughtUp(admin);
      const write = monitor.commands.findIndex((command) => command.name === 'HSET' && command.args[0] === keys.meta('added', job.id!));
      let sent = write;
      while (sent > 0 && monitor.commands[sent].source === 'lua') sent--;
      const script = monitor.commands.slice(sent, write + 1);
      expect({
        sentAs: script[0].name.replace('EVALSHA', 'EVAL'),
        withBullMqAdd: script.some((command) => command.name === 'HMSET' && command.args[0] === `${prefix}:added:${job.id}`),
      }).toEqual({ sentAs: 'EVAL', withBullMqAdd: true });
    } finally {
      monitor.stop();
    }
    // The same id again: BullMQ keeps the first job and says so; its metadata is left as it was.
    const again = await added.add('print', { other: true }, { jobId: 'report-1' });
    expect(again.id).toBe(job.id);
    expect(await admin.hget(keys.meta('added', job.id!), 'maxAttempts')).toBe('3');
    const bulk = await added.addBulk([
      { name: 'print', data: {} },
      { name: 'print', data: {} },
    ]);
    expect(bulk.map((one) => typeof one.id)).toEqual(['string', 'string']);
    const running = worker('added', pages, true);
    await Promise.all([job, ...bulk].map((one) => ended(running, one.id!)));
    for (const one of [job, ...bulk]) {
      expect((await eventsOf('added', one.id!)).map(([type]) => type)).toEqual(['started', 'progress', 'log', 'progress', 'completed']);
    }
    // Its stream expired (as after the retention) while BullMQ keeps the completed job: an add of
    // the same id is BullMQ's duplicate, and gives that job no new metadata.
    await admin.del(keys.meta('added', job.id!), keys.events('added', job.id!));
    expect((await added.add('print', {}, { jobId: 'report-1' })).id).toBe(job.id);
    expect(await admin.exists(keys.meta('added', job.id!))).toBe(0);
  });

  it('a job system code enqueued, cancelled while it runs and retried by BullMQ keeps its cancel', async () => {
    await startApp(['system']);
    const mayFail = signal();
    const isRunning = signal();
    const system = worker(
      'system',
      async (job: Job) => {
        if (job.attemptsMade > 0) return 'second';
        isRunning.fire();
        await mayFail.fired;
        throw new Error('first attempt fails');
      },
      true,
    );
    // No owner: stored as a job added with plain BullMQ is, which a worker may take for an id added again.
    const info = await jobQueue.enqueue('print', {}, { queue: 'system', attempts: 2 });
    const done = ended(system, info.id);
    try {
      await isRunning.fired;
      await jobQueue.cancel(info.id, { queue: 'system', reason: 'stop' });
    } finally {
      mayFail.fire();
    }
    await done;
    expect(await eventsOf('system', info.id)).toEqual([
      ['started', { attempt: 1 }],
      ['cancelled', { reason: 'stop' }],
    ]);
  });

  it('a cancel ends the stream; the processor runs on, its later calls and its end are BullMQ’s alone', async () => {
    await startApp(['cancels']);
    const added = queue('cancels');
    const mayGoOn = signal();
    const isRunning = signal();
    const cancels = worker(
      'cancels',
      async (job: Job) => {
        await job.updateProgress('before');
        isRunning.fire();
        await mayGoOn.fired;
        await job.updateProgress('after');
        return 'done';
      },
      true,
    );
    const job = await added.add('print', {});
    const done = ended(cancels, job.id!);
    try {
      await isRunning.fired;
      await jobQueue.cancel(job.id!, { queue: 'cancels', reason: 'not needed' });
    } finally {
      mayGoOn.fire();
    }
    await done;
    expect(await eventsOf('cancels', job.id!)).toEqual([
      ['started', { attempt: 1 }],
      ['progress', 'before'],
      ['cancelled', { reason: 'not needed' }],
    ]);
    expect(await bullView(added, job.id!)).toMatchObject({ state: 'completed', returnvalue: 'done', progress: 'after' });
    expect(await jobQueue.getJob(job.id!, { queue: 'cancels' })).toMatchObject({ state: 'cancelled' });
  });

  it('a job moved back as stalled shows its next attempt as a new started, and only the run holding the lock ends it', async () => {
    await startApp(['stalls']);
    const stalls = queue('stalls');
    const firstMayEnd = signal();
    const firstStarted = signal();
    const firstCalledLate = signal();
    // The first run holds its job without renewing its lock: BullMQ's stalled check moves the job back.
    const first = worker(
      'stalls',
      async (job: Job) => {
        await job.updateProgress('first run');
        firstStarted.fire();
        await firstMayEnd.fired;
        // BullMQ takes the call (the job is there); the stream, whose attempt moved on, does not.
        await job.updateProgress('first run, late');
        firstCalledLate.fire();
        return 'first';
      },
      true,
      // (Nor checks for stalled jobs: its check would hold off the other worker's for its interval.)
      { skipLockRenewal: true, skipStalledCheck: true, lockDuration: 1000 },
    );
    // BullMQ refuses the first run's move to finished (its lock is gone) and says so.
    const firstRefused = new Promise<string>((resolve) => first.on('error', (error) => resolve(error.message)));
    const monitor = await RedisMonitor.start(server.url);
    try {
      const job = await stalls.add('hold', {}, { attempts: 3 });
      await firstStarted.fired;
      const second = worker(
        'stalls',
        async (held: Job) => {
          await held.updateProgress('second run');
          return 'second';
        },
        true,
        { lockDuration: 1000, stalledInterval: 500 },
      );
      await ended(second, job.id!);
      firstMayEnd.fire();
      await firstCalledLate.fired;
      expect(await firstRefused).toMatch(/Missing lock for job .* moveToFinished/);
      expect(await eventsOf('stalls', job.id!)).toEqual([
        ['started', { attempt: 1 }],
        ['progress', 'first run'],
        ['started', { attempt: 2 }],
        ['progress', 'second run'],
        ['completed', { result: 'second' }],
      ]);
      expect(await bullView(stalls, job.id!)).toMatchObject({ state: 'completed', returnvalue: 'second' });
      await monitor.caughtUp(admin);
      expect(writesOf(monitor, 'stalls', job.id!)).toEqual(withBullMqWrites(['started', 'progress', 'started', 'progress', 'completed']));
    } finally {
      firstMayEnd.fire();
      monitor.stop();
    }
  });

  it('a job stalled more often than BullMQ allows ends failed with BullMQ’s reason, its processor not run again', async () => {
    await startApp(['overstalls']);
    const overstalls = queue('overstalls');
    const firstStarted = signal();
    const firstMayEnd = signal();
    worker(
      'overstalls',
      async (job: Job) => {
        await job.updateProgress('first run');
        firstStarted.fire();
        await firstMayEnd.fired;
        return 'first';
      },
      true,
      { skipLockRenewal: true, skipStalledCheck: true, lockDuration: 1000 },
    );
    try {
      const job = await overstalls.add('hold', {}, { attempts: 3 });
      await firstStarted.fired;
      let secondRuns = 0;
      const second = worker(
        'overstalls',
        async () => {
          secondRuns++;
          return 'second';
        },
        true,
        { lockDuration: 1000, stalledInterval: 500, maxStalledCount: 0 },
      );
      await ended(second, job.id!);
      expect(secondRuns).toBe(0);
      const bull = await bullView(overstalls, job.id!);
      expect(bull).toMatchObject({ state: 'failed', failedReason: 'job stalled more than allowable limit' });
      // BullMQ moves the job back with a deferred failure, and the worker that gets it next fails it
      // without running it: that move to active is a start, as BullMQ counts it (attemptsStarted).
      expect(await eventsOf('overstalls', job.id!)).toEqual([
        ['started', { attempt: 1 }],
        ['progress', 'first run'],
        ['started', { attempt: 2 }],
        ['failed', { error: { message: 'job stalled more than allowable limit' } }],
      ]);
      expect(await jobQueue.getJob(job.id!, { queue: 'overstalls' })).toMatchObject({ state: 'failed' });
    } finally {
      firstMayEnd.fire();
    }
  });

  it('flows: a parent runs once its children did, with their values; BullMQ’s view is as without the module', async () => {
    await startApp(['flow-with', 'flow-without']);
    const views: Record<string, unknown> = {};
    for (const name of ['flow-with', 'flow-without']) {
      const flows = new FlowProducer({ connection: connection(), prefix });
      closing.push(flows);
      const running = worker(
        name,
        async (job: Job<{ n?: number }>) => {
          if (job.name === 'child') return job.data.n! * 10;
          const values = Object.values(await job.getChildrenValues<number>());
          return values.reduce((sum, value) => sum + value, 0);
        },
        name === 'flow-with',
      );
      const tree = await flows.add({
        name: 'parent',
        queueName: name,
        children: [1, 2].map((n) => ({ name: 'child', queueName: name, data: { n } })),
      });
      await ended(running, tree.job.id!);
      const added = queue(name);
      const children = tree.children!.map((child) => child.job.id!);
      views[name] = {
        parent: await bullView(added, tree.job.id!),
        children: await Promise.all(children.map((id) => bullView(added, id))),
        values: Object.values(await (await added.getJob(tree.job.id!))!.getChildrenValues()).sort(),
      };
      if (name === 'flow-with') {
        expect(await eventsOf(name, tree.job.id!)).toEqual([
          ['started', { attempt: 1 }],
          ['completed', { result: 30 }],
        ]);
        expect(await Promise.all(children.map((id) => eventsOf(name, id)))).toEqual(
          [10, 20].map((result) => [
            ['started', { attempt: 1 }],
            ['completed', { result }],
          ]),
        );
      }
    }
    expect(views['flow-with']).toEqual(views['flow-without']);
    expect(views['flow-with']).toMatchObject({ parent: { state: 'completed', returnvalue: 30 }, values: [10, 20] });
  });

  it('job schedulers: each job a scheduler adds runs as without the module, each with a stream of its own', async () => {
    await startApp(['ticks-with', 'ticks-without']);
    const views: Record<string, unknown> = {};
    for (const name of ['ticks-with', 'ticks-without']) {
      const added = queue(name);
      const ran: string[] = [];
      const third = signal();
      const running = worker(
        name,
        async (job: Job) => {
          ran.push(job.id!);
          if (ran.length === 3) third.fire();
          return `tick ${job.name}`;
        },
        name === 'ticks-with',
      );
      await added.upsertJobScheduler('every-100', { every: 100 }, { name: 'tick', data: {} });
      await third.fired;
      await added.removeJobScheduler('every-100');
      await running.close();
      const firstThree = ran.slice(0, 3);
      views[name] = {
        ids: firstThree.map((id) => id.replace(/\d+$/, '<time>')),
        jobs: await Promise.all(firstThree.map((id) => bullView(added, id))),
        schedulers: await added.getJobSchedulers(),
      };
      if (name === 'ticks-with') {
        expect(await Promise.all(firstThree.map((id) => eventsOf(name, id)))).toEqual(
          firstThree.map(() => [
            ['started', { attempt: 1 }],
            ['completed', { result: 'tick tick' }],
          ]),
        );
      }
    }
    expect(views['ticks-with']).toEqual(views['ticks-without']);
    expect(views['ticks-with']).toMatchObject({ ids: Array(3).fill('repeat:every-100:<time>'), schedulers: [] });
  });

  it('QueueEvents hears the same events of a job, in the same order, as without the module', async () => {
    await startApp(['heard-with', 'heard-without']);
    const heard: Record<string, string[]> = {};
    for (const name of ['heard-with', 'heard-without']) {
      const events = new QueueEvents(name, { connection: connection(), prefix });
      closing.push(events);
      await events.waitUntilReady();
      const seen: string[] = [];
      // Known before the add: QueueEvents may hear of the job before the add resolves.
      const jobId = `print-${name}`;
      const ended = signal();
      for (const type of ['added', 'waiting', 'active', 'progress', 'completed', 'failed', 'retries-exhausted'] as const) {
        events.on(type, (args: { jobId: string; data?: unknown; returnvalue?: unknown; failedReason?: string }) => {
          if (args.jobId !== jobId) return;
          seen.push([type, JSON.stringify(args.data ?? args.returnvalue ?? args.failedReason ?? '')].join(' '));
          if (type === 'completed') ended.fire();
        });
      }
      const added = queue(name);
      worker(name, pages, name === 'heard-with');
      await added.add('print', { failFirst: true }, { attempts: 2, jobId });
      await ended.fired;
      heard[name] = seen;
    }
    expect(heard['heard-with']).toEqual(heard['heard-without']);
    expect(heard['heard-with']).toContain('completed {"pages":2}');
    expect(heard['heard-with'].filter((line) => line.startsWith('progress'))).toHaveLength(3);
  });
});
