import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';
import { useScriptsRedis } from './support/scripts-redis.js';

/**
 * The foreign-worker bridge's batch script (`bridge-progress.lua`) against a real Redis: a job's
 * consecutive progress entries in one call, each applied once whatever overlap a re-read brings,
 * within the per-job cap, never into an attempt another writer owns.
 */
describe('bridge-progress: consecutive progress entries of one job in one call', () => {
  const redis = useScriptsRedis();
  const keys = new RedisKeys('bp');
  let jobs = 0;

  const limits = (maxEvents: number) => ({ now: Date.now(), retentionMs: 60_000, maxEvents });

  /** A job whose attempt 1 the bridge started at BullMQ entry `1000-0`. */
  async function startedJob(maxEvents = 100): Promise<{ meta: string; events: string }> {
    const id = `job-${++jobs}`;
    const [meta, events] = [keys.meta('q', id), keys.events('q', id)];
    const create = { name: 'report', maxAttempts: 1, createdAt: Date.now() };
    expect(await redis.scripts.bridgeEntry(meta, events, '1000-0', { kind: 'start', activeMs: 1000 }, limits(maxEvents), create)).toBe(
      'ok',
    );
    return { meta, events };
  }

  const streamOf = async (events: string): Promise<Array<[string, string]>> =>
    (await redis.client.xrange(events, '-', '+')).map(([, fields]) => [fields[1], fields[3]]);

  it('appends each entry once, in order: a re-read batch that overlaps the last one adds only what is new', async () => {
    const { meta, events } = await startedJob();
    expect(await redis.scripts.bridgeProgress(meta, events, 100, ['1000-1', '{"p":1}', '1000-2', '{"p":2}'])).toBe('ok');
    expect(await redis.scripts.bridgeProgress(meta, events, 100, ['1000-2', '{"p":2}', '1000-3', '{"p":3}'])).toBe('ok');
    expect(await redis.scripts.bridgeProgress(meta, events, 100, ['1000-1', '{"p":1}', '1000-3', '{"p":3}'])).toBe('dup');
    expect(await streamOf(events)).toEqual([
      ['started', '{"attempt":1}'],
      ['progress', '{"p":1}'],
      ['progress', '{"p":2}'],
      ['progress', '{"p":3}'],
    ]);
    expect(await redis.client.hget(meta, 'bridged')).toBe('1000-3');
  });

  it('stops at the cap, keeping the last slot for the terminal event', async () => {
    const { meta, events } = await startedJob(4);
    expect(await redis.scripts.bridgeProgress(meta, events, 4, ['1000-1', '1', '1000-2', '2', '1000-3', '3'])).toBe('full');
    expect((await streamOf(events)).map(([type]) => type)).toEqual(['started', 'progress', 'progress']);
    expect(
      await redis.scripts.bridgeEntry(
        meta,
        events,
        '1000-4',
        { kind: 'terminal', state: 'completed', data: '{"result":null}', field: 'result', value: 'null' },
        limits(4),
      ),
    ).toBe('ok');
    expect((await streamOf(events)).map(([type]) => type)).toEqual(['started', 'progress', 'progress', 'completed']);
  });

  it("leaves another writer's attempt alone, and nothing of an ended or unknown job", async () => {
    const { meta, events } = await startedJob();
    // The module's own worker took over with attempt 2 (its start-attempt sets `attempt`, not `foreign`).
    await redis.client.hset(meta, 'attempt', 2);
    expect(await redis.scripts.bridgeProgress(meta, events, 100, ['1000-1', '1'])).toBe('module');
    expect((await streamOf(events)).map(([type]) => type)).toEqual(['started']);
    await redis.client.hset(meta, 'terminal', '1-0');
    expect(await redis.scripts.bridgeProgress(meta, events, 100, ['1000-2', '2'])).toBe('final');
    expect(await redis.scripts.bridgeProgress(keys.meta('q', 'none'), keys.events('q', 'none'), 100, ['1000-1', '1'])).toBe('gone');
  });
});
