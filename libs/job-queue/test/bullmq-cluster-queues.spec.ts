import 'reflect-metadata';
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplicationContext, type ModuleMetadata, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule, Processor, WorkerHost, getQueueToken } from '@nestjs/bullmq';
import { Test } from '@nestjs/testing';
import { Worker, type Job, type Queue } from 'bullmq';
import calculateSlot from 'cluster-key-slot';
import { Redis, type Cluster } from 'ioredis';
import {
  InvalidArgumentError,
  InvalidJobQueueOptionsError,
  JobHandler,
  JobQueue,
  JobQueueModule,
  JobQueueWorker,
  RedisKeys,
  bullModuleClusterConnection,
  type JobEvent,
} from 'nestjs-job-streams';
import type { ClusterNodeView } from '../../../bench/support/cluster-nodes.js';
import { RedisCluster } from '../../../test/support/redis-cluster.js';
import { scriptSource } from '../src/backends/bullmq/job-scripts.js';

/**
 * Queues that carry their own hash tags, under a prefix without one, on a real Redis Cluster of
 * three masters and three replicas: each queue's jobs (BullMQ's keys and the job's stream and
 * metadata, which share their slot) live on the master of the queue's tag, so three queues whose
 * tags lie on three masters spread the jobs over all of them. The processors are plain
 * `@nestjs/bullmq` ones run by `JobQueueWorker`: each `updateProgress` and `log` call is one script
 * on the job's master (BullMQ's command and the stream append together).
 */

// What a team with an @nestjs/bullmq stack adds: workers are made from the bridging subclass.
BullModule.workerClass = JobQueueWorker;

interface CallsData {
  /** How many `updateProgress` and `log` calls (each) the processor makes. */
  calls: number;
  /** Unique per job: it marks the job's calls (their values) wherever they show up. */
  token: string;
  /** A wait before each call (aborted by a cancel). */
  pauseMs?: number;
}

/** What the processors saw of cancels: the tokens of the jobs whose signal stopped them. */
const aborted = new Set<string>();

/** A plain @nestjs/bullmq processor of `queue`: `calls` times `updateProgress`, then `log`. */
function callingProcessor(queue: string): Type<WorkerHost> {
  @Processor(queue)
  class CallingProcessor extends WorkerHost {
    async process(job: Job<CallsData>, _token?: string, signal?: AbortSignal): Promise<{ calls: number }> {
      const { calls, token, pauseMs = 0 } = job.data;
      for (let call = 1; call <= calls; call++) {
        if (pauseMs) {
          try {
            await delay(pauseMs, undefined, { signal });
          } catch (error) {
            if (signal?.aborted) aborted.add(token);
            throw error;
          }
        }
        await job.updateProgress(progressOf(call, token));
        await job.log(logLineOf(call, token));
      }
      return { calls };
    }
  }
  return CallingProcessor;
}

function progressOf(call: number, token: string): { call: number; token: string } {
  return { call, token };
}

function logLineOf(call: number, token: string): string {
  return `${token} line ${call}`;
}

/** The events a job of `calls` calls has, after `started` and before its terminal event. */
function callEvents(calls: number, token: string): Array<[string, unknown]> {
  const events: Array<[string, unknown]> = [];
  for (let call = 1; call <= calls; call++)
    events.push(['progress', progressOf(call, token)], ['log', { message: logLineOf(call, token) }]);
  return events;
}

function simplify(events: JobEvent[]): Array<[string, unknown]> {
  return events.map((event) => [event.type, event.data]);
}

/** True when `slot` is in one of the slot ranges (`CLUSTER NODES`' `0-5460`, or one slot) of `node`. */
function serves(node: ClusterNodeView, slot: number): boolean {
  return node.slots.some((range) => {
    const [from, to = from] = range.split('-').map(Number);
    return slot >= from && slot <= to;
  });
}

/** A client of one node, outside the cluster client: what it reads is that node's alone. */
async function nodeClient(port: number): Promise<Redis> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  return client;
}

/** One entry of a node's slow log: its id (in the order the commands ended), the command and its arguments, the client's address. */
interface LoggedCommand {
  id: number;
  args: string[];
  client: string;
}

/**
 * The client address the slow log gives a command that a script ran (its client has no
 * connection). A script's commands end, and are logged, before the script itself.
 */
const SCRIPT_CLIENT = '?:0';

/** `SLOWLOG GET` entries, oldest first. */
function slowLogEntries(raw: unknown[]): LoggedCommand[] {
  return (raw as Array<[number, number, number, unknown[], string, string]>)
    .map(([id, , , args, client]) => ({ id: Number(id), args: args.map(String), client: String(client) }))
    .sort((a, b) => a.id - b.id);
}

/** The commands that the script `script` (an entry of `entries`) ran: the script-run entries just before it. */
function ranBy(entries: LoggedCommand[], script: LoggedCommand): LoggedCommand[] {
  const ran: LoggedCommand[] = [];
  for (let index = entries.indexOf(script) - 1; index >= 0 && entries[index].client === SCRIPT_CLIENT; index--) ran.unshift(entries[index]);
  return ran;
}

/** The SHA1 by which a script of this library's `scripts/` runs (`EVALSHA`). */
function scriptSha(name: string): string {
  return createHash('sha1').update(scriptSource(name)).digest('hex');
}

/** The first value of `read` that `done` accepts, read every 50 ms for up to 10 s (then the last one). */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await delay(50);
  }
}

describe('bullmq on Redis Cluster: queues with their own hash tags, one per master, under a prefix without one', () => {
  let cluster: RedisCluster | undefined;
  let bullConnection: Cluster | undefined;
  let app: INestApplicationContext | undefined;
  let queue: JobQueue;
  let prefix: string;
  let keys: RedisKeys;
  let masters: ClusterNodeView[];
  /** The three processor queues, the first served by the first master, and so on. */
  let queues: string[];
  /** A queue with a tag of its own whose jobs a worker without the module runs (no processor here). */
  const foreignQueue = '{foreign}';
  const nodes = new Map<number, Redis>();

  beforeAll(async () => {
    cluster = await RedisCluster.start();
    // The masters that serve slots (a node's view of the others' roles can lag behind just after the start).
    masters = (await cluster.describe()).filter((node) => node.role === 'master' && node.slots.length > 0);
    expect(masters).toHaveLength(3);
    // For each master the first queue name `{q<n>}` whose tag lies in its slots.
    queues = masters.map((master) => {
      for (let n = 0; ; n++) if (serves(master, calculateSlot(`q${n}`))) return `{q${n}}`;
    });
    prefix = `cq${randomUUID().slice(0, 8)}`;
    keys = new RedisKeys(prefix);
    bullConnection = await bullModuleClusterConnection(cluster.urls.slice(0, 2));
    @Module({
      imports: [
        BullModule.forRoot({ connection: bullConnection, prefix }),
        BullModule.registerQueue(...[...queues, foreignQueue].map((name) => ({ name }))),
        JobQueueModule.forRoot({ backend: 'bullmq', redis: { clusterNodes: cluster.urls.slice(0, 2), prefix }, shutdownGraceMs: 200 }),
      ],
      providers: queues.map(callingProcessor),
    })
    class TaggedQueuesAppModule {}
    app = await NestFactory.createApplicationContext(TaggedQueuesAppModule, { logger: false, abortOnError: false });
    await app.init();
    queue = app.get(JobQueue);
    for (const node of await cluster.describe()) nodes.set(node.port, await nodeClient(node.port));
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    bullConnection?.disconnect();
    for (const client of nodes.values()) client.disconnect();
    await cluster?.destroy();
  }, 30_000);

  async function follow(id: string, queueName: string): Promise<JobEvent[]> {
    const events: JobEvent[] = [];
    for await (const event of queue.follow(id, { queue: queueName, owner: 'alice' })) events.push(event);
    return events;
  }

  /** Every key of this test's prefix, by the port of the master that holds it (scanned on each master). */
  async function keysByMaster(): Promise<Map<string, number[]>> {
    const holders = new Map<string, number[]>();
    for (const master of masters) {
      for (const key of await nodes.get(master.port)!.keys(`${prefix}:*`)) holders.set(key, [...(holders.get(key) ?? []), master.port]);
    }
    return holders;
  }

  it("each job's stream holds started, every call once in call order, completed; its keys and BullMQ's lie on its queue's master; every master holds jobs", async () => {
    const CALLS = 6;
    const jobs = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const queueName = queues[i % queues.length];
        const token = randomUUID().slice(0, 8);
        const { id } = await queue.enqueue('calls', { calls: CALLS, token } satisfies CallsData, { queue: queueName, owner: 'alice' });
        return { queueName, id, token };
      }),
    );
    const streams = await Promise.all(jobs.map(({ id, queueName }) => follow(id, queueName)));
    for (const [index, { id, queueName, token }] of jobs.entries()) {
      expect({ id, events: simplify(streams[index]) }).toEqual({
        id,
        events: [['started', { attempt: 1 }], ...callEvents(CALLS, token), ['completed', { result: { calls: CALLS } }]],
      });
      // Read again through the read API: the same events, ids and all.
      expect((await queue.readEvents(id, { queue: queueName, owner: 'alice' })).events).toEqual(streams[index]);
    }

    const holders = await keysByMaster();
    const holding = new Set<number>();
    for (const { id, queueName } of jobs) {
      const master = masters[queues.indexOf(queueName)];
      const where = {
        bullmq: holders.get(keys.bullJob(queueName, id)),
        meta: holders.get(keys.meta(queueName, id)),
        events: holders.get(keys.events(queueName, id)),
      };
      expect({ id, queueName, where }).toEqual({
        id,
        queueName,
        where: { bullmq: [master.port], meta: [master.port], events: [master.port] },
      });
      holding.add(master.port);
    }
    // BullMQ's keys of each queue too (its completed set, its events stream).
    for (const [index, queueName] of queues.entries()) {
      expect(holders.get(keys.bullFinished(queueName, 'completed'))).toEqual([masters[index].port]);
      expect(holders.get(keys.bullEvents(queueName))).toEqual([masters[index].port]);
    }
    expect(holding.size).toBe(3);
  }, 60_000);

  it("each updateProgress and log call of a processor is one script on the master, BullMQ's command and the stream append together", async () => {
    const CALLS = 5;
    // The composed scripts are loaded on each master first (a first call runs EVALSHA, then EVAL).
    await Promise.all(
      queues.map(async (queueName) => {
        const { id } = await queue.enqueue('calls', { calls: 1, token: 'warm-up' } satisfies CallsData, {
          queue: queueName,
          owner: 'alice',
        });
        await follow(id, queueName);
      }),
    );
    const clients = masters.map((master) => nodes.get(master.port)!);
    const bridgeShas = ['bridge-entry', 'bridge-progress'].map(scriptSha);
    // Every command a master runs goes to its slow log (with its arguments, the commands a script
    // runs included), for the time of these jobs: each call's value can be traced to the commands
    // that carried it, whatever else the masters run meanwhile.
    await Promise.all(
      clients.map(async (client) => {
        await client.config('SET', 'slowlog-max-len', '100000');
        await client.slowlog('RESET');
        await client.config('SET', 'slowlog-log-slower-than', '0');
      }),
    );
    let logged: unknown[][];
    const jobs = await Promise.all(
      queues.map(async (queueName) => {
        const token = randomUUID().slice(0, 8);
        const { id } = await queue.enqueue('calls', { calls: CALLS, token } satisfies CallsData, { queue: queueName, owner: 'alice' });
        expect(simplify(await follow(id, queueName))).toEqual([
          ['started', { attempt: 1 }],
          ...callEvents(CALLS, token),
          ['completed', { result: { calls: CALLS } }],
        ]);
        return { id, queueName, token };
      }),
    );
    try {
      logged = await Promise.all(clients.map((client) => client.slowlog('GET', '-1') as Promise<unknown[]>));
    } finally {
      await Promise.all(clients.map((client) => client.config('SET', 'slowlog-log-slower-than', '10000')));
    }

    for (const [index, { id, queueName, token }] of jobs.entries()) {
      const onItsMaster = slowLogEntries(logged[index]);
      for (let call = 1; call <= CALLS; call++) {
        const bullKey = keys.bullJob(queueName, id);
        for (const [value, bullWrite] of [
          [JSON.stringify(progressOf(call, token)), ['HSET', bullKey]],
          [logLineOf(call, token), ['RPUSH', `${bullKey}:logs`]],
        ] as const) {
          // The call reached Redis as one command: a script (EVALSHA) on BullMQ's keys and the job's
          // stream. (The foreign-worker bridge reads progress from BullMQ's events stream too, and
          // hands an attempt's first entries to its script, which leaves the module's attempts alone.)
          const sent = onItsMaster.filter(
            (entry) => entry.client !== SCRIPT_CLIENT && entry.args.includes(value) && !bridgeShas.includes(entry.args[1]),
          );
          expect({ id, value, commands: sent.map((entry) => entry.args[0].toLowerCase()) }).toEqual({ id, value, commands: ['evalsha'] });
          expect(sent[0].args).toEqual(expect.arrayContaining([bullKey, keys.meta(queueName, id), keys.events(queueName, id)]));
          // That script wrote BullMQ's value of the call and appended its event to the job's stream.
          const ran = ranBy(onItsMaster, sent[0]);
          const wrote = (command: string, key: string): boolean =>
            ran.some(
              (entry) => entry.args[0].toUpperCase() === command && entry.args[1] === key && entry.args.some((arg) => arg.includes(value)),
            );
          expect({ id, value, bullmq: wrote(bullWrite[0], bullWrite[1]), stream: wrote('XADD', keys.events(queueName, id)) }).toEqual({
            id,
            value,
            bullmq: true,
            stream: true,
          });
        }
      }
      // Nothing of these jobs went to another master.
      for (const [other, entries] of logged.entries()) {
        if (other === index) continue;
        expect(slowLogEntries(entries).filter((entry) => entry.args.some((arg) => arg.includes(token)))).toEqual([]);
      }
    }
    // No call went the two-call way (BullMQ's script, then the stream's own append script): that
    // script never ran on any master of this cluster.
    for (const client of clients) expect(await client.script('EXISTS', scriptSha('append-events'))).toEqual([0]);
  }, 60_000);

  it('a cancel from the JobQueue API reaches the running processor of each queue, whichever master its job is on, and ends its stream with cancelled', async () => {
    const jobs = await Promise.all(
      queues.map(async (queueName) => {
        const token = randomUUID().slice(0, 8);
        const { id } = await queue.enqueue('calls', { calls: 2, token, pauseMs: 60_000 } satisfies CallsData, {
          queue: queueName,
          owner: 'alice',
        });
        const page = await queue.readEvents(id, { queue: queueName, owner: 'alice', waitMs: 10_000 });
        expect(simplify(page.events)).toEqual([['started', { attempt: 1 }]]);
        return { id, queueName, token };
      }),
    );
    // Cancels reach the workers by pub/sub, on the one node the worker's subscriber uses: the jobs
    // of at least two of the three masters are cancelled through a node other than their own.
    const channel = keys.cancelChannel();
    const subscribedOn: number[] = [];
    for (const [port, client] of nodes) {
      const [, count] = (await client.pubsub('NUMSUB', channel)) as [string, number];
      if (Number(count) > 0) subscribedOn.push(port);
    }
    expect(subscribedOn).toHaveLength(1);
    const elsewhere = jobs.filter(({ queueName }) => masters[queues.indexOf(queueName)].port !== subscribedOn[0]);
    expect(elsewhere.length).toBeGreaterThanOrEqual(2);

    await Promise.all(jobs.map(({ id, queueName }) => queue.cancel(id, { queue: queueName, owner: 'alice', reason: 'stop' })));
    for (const { id, queueName, token } of jobs) {
      expect(simplify(await follow(id, queueName))).toEqual([
        ['started', { attempt: 1 }],
        ['cancelled', { reason: 'stop' }],
      ]);
      expect(await queue.getJob(id, { queue: queueName, owner: 'alice' })).toMatchObject({ state: 'cancelled' });
      // The processor was stopped through its signal (its minute-long wait did not run out), and
      // BullMQ records what it did (it threw on the abort): failed there, not retried.
      const bull = app!.get<Queue>(getQueueToken(queueName));
      expect(
        await eventually(
          () => bull.getJobState(id),
          (state) => state !== 'active',
        ),
      ).toBe('failed');
      expect(aborted.has(token)).toBe(true);
    }
  }, 60_000);

  it("a job run by a worker without the module (a plain BullMQ Worker) is bridged from its queue's events stream, read apart from the other queues' (another slot)", async () => {
    const worker = new Worker(
      foreignQueue,
      async (job: Job<{ steps: number }>) => {
        for (let step = 1; step <= job.data.steps; step++) await job.updateProgress(step);
        return { steps: job.data.steps };
      },
      { connection: bullConnection!, prefix },
    );
    try {
      const { id } = await queue.enqueue('foreign', { steps: 3 }, { queue: foreignQueue, owner: 'alice' });
      expect(simplify(await follow(id, foreignQueue))).toEqual([
        ['started', { attempt: 1 }],
        ['progress', 1],
        ['progress', 2],
        ['progress', 3],
        ['completed', { result: { steps: 3 } }],
      ]);
      expect(queue.bridgeStatus().map(({ queue: name, leading }) => ({ name, leading }))).toEqual(
        [...queues, foreignQueue].sort().map((name) => ({ name, leading: true })),
      );
    } finally {
      await worker.close();
    }
  }, 30_000);

  it('an enqueue into a queue without a hash tag of its own is refused as bad input, before anything is written', async () => {
    const refusal = await queue.enqueue('report', { pages: 1 }, { owner: 'alice', queue: 'untagged' }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(InvalidArgumentError);
    expect((refusal as Error).message).toContain('queue "untagged" has no hash tag of its own');
    expect([...(await keysByMaster()).keys()].filter((key) => key.includes(':untagged:'))).toEqual([]);
  });

  it('refuses to start with a queue whose name carries no hash tag, or with @JobHandler jobs (queue "jobs"), under a prefix without one', async () => {
    class BuildHandler {
      @JobHandler('build')
      build(): string {
        return 'built';
      }
    }
    const startProblem = async (moduleMetadata: ModuleMetadata): Promise<string> => {
      const moduleRef = await Test.createTestingModule(moduleMetadata).compile();
      moduleRef.useLogger(false);
      try {
        const error = await moduleRef.init().then(
          () => undefined,
          (failure: unknown) => failure,
        );
        expect(error).toBeInstanceOf(InvalidJobQueueOptionsError);
        return (error as InvalidJobQueueOptionsError).problems.join('\n');
      } finally {
        await moduleRef.close();
      }
    };
    const jobQueue = JobQueueModule.forRoot({
      backend: 'bullmq',
      redis: { clusterNodes: cluster!.urls.slice(0, 2), prefix: `${prefix}x` },
    });
    expect(
      await startProblem({
        imports: [
          BullModule.forRoot({ connection: bullConnection!, prefix: `${prefix}x` }),
          BullModule.registerQueue({ name: 'plain' }),
          jobQueue,
        ],
      }),
    ).toContain('queue names must each carry a hash tag on Redis Cluster when "redis.prefix" has none, as BullMQ requires, e.g. "{plain}"');
    expect(await startProblem({ imports: [jobQueue], providers: [BuildHandler] })).toContain(
      `"redis.prefix" must carry a hash tag on Redis Cluster for @JobHandler jobs (build)`,
    );
  }, 30_000);
});
