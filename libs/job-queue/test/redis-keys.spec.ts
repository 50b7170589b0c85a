import { describe, expect, it } from '@jest/globals';
import { RedisKeys } from '../src/backends/bullmq/redis-keys.js';

describe('RedisKeys.queueOfJobKey (no Redis)', () => {
  it('finds the queue of any key of a job, whatever the prefix holds', () => {
    for (const prefix of ['bull', '{bull}', 'app:bull', '{app}:bull']) {
      const keys = new RedisKeys(prefix);
      for (const id of ['42', 'custom-id_1.x~', '0b6d3c1e-3f2a-4c55-9a53-7c1f1f3e2a10']) {
        expect([keys.meta('reports', id), keys.events('reports', id)].map(RedisKeys.queueOfJobKey)).toEqual(['reports', 'reports']);
      }
    }
  });

  it("reads BullMQ's own ids of a job scheduler's jobs, which hold `:`", () => {
    const keys = new RedisKeys('app:bull');
    expect(RedisKeys.queueOfJobKey(keys.events('{ticks}', 'repeat:every-100:1796694788901'))).toBe('{ticks}');
    expect(RedisKeys.queueOfJobKey(keys.meta('ticks', 'repeat:3f2a9c:1796694788901'))).toBe('ticks');
  });
});
