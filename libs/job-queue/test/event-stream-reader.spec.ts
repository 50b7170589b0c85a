import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { EventStreamReader, type StreamSubscription } from '../src/reader/event-stream-reader.js';
import type { JobEvent } from '../src/contract/job-event.js';
import { RedisMonitor } from '../../../test/support/redis-monitor.js';
import { RedisServer } from '../../../test/support/redis-server.js';
import { RedisFaultProxy } from '../../../test/support/redis-fault-proxy.js';

/**
 * The shared reader's window per subscriber: a subscriber whose client does not read holds at
 * most a bounded window (in events and in bytes), then drops it and reads on from Redis, so a
 * slow client never costs memory in proportion to what its job produces, and still gets every
 * event exactly once.
 */
describe('EventStreamReader: a subscriber that does not keep up', () => {
  let redis: RedisServer;
  let commands: Redis;
  let blocking: Redis;
  let reader: EventStreamReader;
  let key: string;
  let keys = 0;

  beforeAll(async () => {
    redis = await RedisServer.start();
    commands = new Redis(redis.url);
    blocking = new Redis(redis.url, { maxRetriesPerRequest: null });
    // Every followed stream counts as a live job here (the stream itself is checked, and it exists).
    reader = new EventStreamReader(blocking, commands, { liveKeyOf: (streamKey) => streamKey, sweepMs: Infinity });
  });

  beforeEach(() => {
    key = `reader-test:{${++keys}}:events`;
  });

  afterAll(async () => {
    reader?.close();
    commands?.disconnect();
    blocking?.disconnect();
    await redis?.destroy();
  });

  const append = async (entries: Array<{ type: string; data: unknown }>): Promise<string[]> => {
    const pipeline = commands.pipeline();
    for (const entry of entries) pipeline.xadd(key, '*', 'type', entry.type, 'data', JSON.stringify(entry.data));
    return ((await pipeline.exec()) ?? []).map(([error, id]) => {
      if (error) throw error;
      return id as string;
    });
  };

  /** The subscription's state has no event to await: it is checked every few ms, up to a deadline. */
  const detached = async (subscription: StreamSubscription): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (subscription.attached) {
      if (Date.now() > deadline) throw new Error(`still attached, holding ${subscription.pendingCount} events`);
      await delay(5);
    }
  };

  /** Pulls until `count` events were handed out. */
  const pull = async (subscription: StreamSubscription, count: number): Promise<JobEvent[]> => {
    const events: JobEvent[] = [];
    while (events.length < count) {
      const next = await subscription.next(5000);
      if (!next.length) throw new Error(`nothing more after ${events.length} of ${count} events`);
      events.push(...next);
    }
    return events;
  };

  it('drops what it holds once it exceeds 1 MiB of events, and reads on from its last handed-out event', async () => {
    const [first] = await append([{ type: 'started', data: { attempt: 1 } }]);
    const subscription = reader.subscribe(key, '0');
    try {
      expect((await subscription.next(5000)).map((event) => event.id)).toEqual([first]);
      // 60 events of 20 KB (1.2 MB in all, far fewer than 5000 events) while nobody asks for them.
      const big = await append(Array.from({ length: 60 }, (_, index) => ({ type: 'chunk', data: { index, text: 'x'.repeat(20_000) } })));
      await detached(subscription);
      expect(subscription.pendingCount).toBe(0);

      const [small] = await append([{ type: 'completed', data: { result: null } }]);
      const events = await pull(subscription, 61);
      expect(events.map((event) => event.id)).toEqual([...big, small]);
      expect(events.map((event) => (event.data as { index?: number }).index)).toEqual([...big.map((_, index) => index), undefined]);
    } finally {
      subscription.close();
    }
  });

  it('drops what it holds once it exceeds 5000 events, and still hands out every event once, in order', async () => {
    const subscription = reader.subscribe(key, '0');
    try {
      const ids = await append(Array.from({ length: 6000 }, (_, index) => ({ type: 'token', data: { index } })));
      await detached(subscription);
      expect(subscription.pendingCount).toBe(0);
      const events = await pull(subscription, 6000);
      expect(events.map((event) => event.id)).toEqual(ids);
      // Caught up, it is fed by the shared reader again.
      const next = subscription.next(5000);
      const [last] = await append([{ type: 'completed', data: { result: null } }]);
      expect((await next).map((event) => event.id)).toEqual([last]);
      expect(subscription.attached).toBe(true);
    } finally {
      subscription.close();
    }
  });
});

describe('EventStreamReader: closing', () => {
  it('ends the wait of a subscriber that was catching up on its own when the reader closed', async () => {
    const redis = await RedisServer.start();
    const commands = new Redis(redis.url);
    const blocking = new Redis(redis.url, { maxRetriesPerRequest: null });
    const reader = new EventStreamReader(blocking, commands, { liveKeyOf: (streamKey) => streamKey, sweepMs: Infinity });
    try {
      const subscription = reader.subscribe('reader-test:{closing}:events', '0-0');
      subscription.catchUp(); // as after an overflow: its next read goes to Redis itself
      const next = subscription.next(Infinity);
      reader.close(); // while that read is on its way
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        next.then((events) => ({ events })),
        new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), 5000))),
      ]);
      clearTimeout(timer);
      expect(outcome).toEqual({ events: [] });
      expect(subscription.closed).toBe(true);
    } finally {
      reader.close();
      commands.disconnect();
      blocking.disconnect();
      await redis.destroy();
    }
  });
});

describe('EventStreamReader: a followed job that vanishes', () => {
  it('closes its subscribers as gone once the job no longer exists, and keeps those of live jobs', async () => {
    const redis = await RedisServer.start();
    const commands = new Redis(redis.url);
    const blocking = new Redis(redis.url, { maxRetriesPerRequest: null });
    const reader = new EventStreamReader(blocking, commands, { liveKeyOf: (streamKey) => `${streamKey}:live`, sweepMs: 50 });
    try {
      await commands.set('reader-test:{vanishing}:events:live', '1');
      await commands.set('reader-test:{staying}:events:live', '1');
      const vanishing = reader.subscribe('reader-test:{vanishing}:events', '0-0');
      const staying = reader.subscribe('reader-test:{staying}:events', '0-0');
      const waiting = vanishing.next(Infinity);
      await commands.del('reader-test:{vanishing}:events:live'); // as when its retention expired
      expect(await waiting).toEqual([]);
      expect(vanishing.gone).toBe(true);
      // The live one still gets what comes next.
      const id = await commands.xadd('reader-test:{staying}:events', '*', 'type', 'step', 'data', '{}');
      expect((await staying.next(10_000)).map((event) => event.id)).toEqual([id]);
      expect(staying.gone).toBe(false);
      staying.close();
    } finally {
      reader.close();
      commands.disconnect();
      blocking.disconnect();
      await redis.destroy();
    }
  });
});

describe('EventStreamReader: a follow that starts while the wake-up for an earlier one is on its way', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterAll(async () => {
    await redis?.destroy();
  });

  it('wakes the read in flight again instead of leaving the new follow to its 5 s block', async () => {
    const { hostname, port } = new URL(redis.url);
    // Only the reader's command connection (the one that writes wake-ups) goes through the proxy.
    const proxy = await RedisFaultProxy.start({ host: hostname, port: Number(port) });
    const admin = new Redis(redis.url);
    const commands = new Redis(proxy.urlFor(redis.url));
    await commands.ping(); // connected and ready: its handshake's replies are not the ones held below
    const blocking = new Redis(redis.url, { maxRetriesPerRequest: null });
    const monitor = await RedisMonitor.start(redis.url, (command) => command.name === 'XREAD');
    const reader = new EventStreamReader(blocking, commands, { liveKeyOf: (streamKey) => streamKey, sweepMs: Infinity });
    const [a, b, c] = ['a', 'b', 'c'].map((name) => `wake-test:{${name}}:events`);
    const reads = (key: string, cursor?: string) => (): boolean =>
      monitor.commands.some((command) => {
        const at = RedisMonitor.readCursor(command, key);
        return at !== undefined && (cursor === undefined || at === cursor);
      });
    try {
      const ofA = reader.subscribe(a, '0');
      const firstOfA = (await admin.xadd(a, '*', 'type', 'started', 'data', '{}'))!;
      expect((await ofA.next(5000)).map((event) => event.id)).toEqual([firstOfA]);
      await monitor.until(reads(a, firstOfA), 5000, () => 'no read of A after its first event');
      // A read covering A alone blocks. B's follow wakes it: the wake-up's XADD runs, and with it the
      // read ends and the next one (covering B too) goes out, but the XADD's reply is held back.
      proxy.hold();
      const ofB = reader.subscribe(b, '0');
      await monitor.until(reads(b), 5000, () => 'no read covering B');
      // The wake-up's reply reaches the proxy before that read reaches Redis, but this process may
      // see the monitor's line first.
      await proxy.untilHeld(5000);
      // C's follow comes while that reply is still on its way: it must wake the read covering B,
      // not count on the wake-up it is waiting for (which ended the read before).
      const onlyOfC = (await admin.xadd(c, '*', 'type', 'started', 'data', '{}'))!;
      const ofC = reader.subscribe(c, '0');
      expect((await ofC.next(4000)).map((event) => event.id)).toEqual([onlyOfC]);
      for (const subscription of [ofA, ofB, ofC]) subscription.close();
    } finally {
      proxy.release();
      reader.close();
      monitor.stop();
      for (const client of [admin, commands, blocking]) client.disconnect();
      await proxy.stop();
    }
  });
});
