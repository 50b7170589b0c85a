import { describe, expect, it } from '@jest/globals';
import { Cluster } from 'ioredis';
import {
  InvalidJobQueueOptionsError,
  bullModuleClusterConnection,
  clusterFailoverOptions,
  jobQueueOptionsFromEnv,
  validateJobQueueOptions,
  type ConfigReader,
} from 'nestjs-job-streams';
import { withBullSharedConfig } from '../src/options/options-from-bull-config.js';

/** A config reader over `values`, as `ConfigService` reads the environment. */
function env(values: Record<string, string | undefined>): ConfigReader {
  return { get: <T = string>(key: string) => values[key] as T | undefined };
}

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidJobQueueOptionsError) return error.problems;
    throw error;
  }
  throw new Error('expected InvalidJobQueueOptionsError');
}

describe('Redis Cluster options', () => {
  it('REDIS_CLUSTER_NODES, or several URLs in REDIS_URL, name the nodes; the prefix defaults to {jq} there', () => {
    const nodes = 'redis://10.0.0.1:7000,redis://10.0.0.2:7000';
    const settings: Array<Record<string, string>> = [{ REDIS_CLUSTER_NODES: nodes }, { REDIS_URL: nodes }];
    for (const vars of settings) {
      const resolved = validateJobQueueOptions({ ...jobQueueOptionsFromEnv(env(vars)), backend: 'bullmq' }).redis;
      expect(resolved.clusterNodes).toEqual(['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000']);
      expect(resolved.prefix).toBe('{jq}');
    }
  });

  it('a single REDIS_URL whose password holds a comma stays one server', () => {
    const options = jobQueueOptionsFromEnv(env({ REDIS_URL: 'redis://:pa,ss@10.0.0.1:6379' }));
    expect(options.redis).toMatchObject({ url: 'redis://:pa,ss@10.0.0.1:6379' });
    expect(options.redis?.clusterNodes).toBeUndefined();
  });

  it('on a cluster the prefix carries a hash tag, or each queue name its own (and there are no jobNames); the nodes must be URLs; the errors never quote a node', () => {
    const onCluster = (prefix: string, options: { queues?: string[]; jobNames?: string[] } = {}) =>
      validateJobQueueOptions({ backend: 'bullmq', ...options, redis: { clusterNodes: ['redis://a:1'], prefix } });
    expect(onCluster('{jq}', { queues: ['reports'], jobNames: ['build'] }).redis.prefix).toBe('{jq}');
    // Without a tag in the prefix: queues with tags of their own (the application's queues are
    // checked again at start, once its processors and handlers are found).
    expect(onCluster('jq').redis.prefix).toBe('jq');
    expect(onCluster('jq', { queues: ['{reports}', 'x{exports}y'] }).queues).toEqual(['{reports}', 'x{exports}y']);
    expect(problemsOf(() => onCluster('jq', { queues: ['{reports}', 'exports', '{}x'] }))).toEqual([
      expect.stringContaining(
        '"queues" must each carry a hash tag on Redis Cluster when "redis.prefix" has none, as BullMQ requires, e.g. "{exports}" (got ["exports","{}x"])',
      ),
    ]);
    expect(problemsOf(() => onCluster('jq', { jobNames: ['build'] }))).toEqual([
      expect.stringContaining('"redis.prefix" must carry a hash tag on Redis Cluster when "jobNames" are set'),
    ]);
    // On one server any prefix and queue names.
    expect(
      validateJobQueueOptions({ backend: 'bullmq', queues: ['reports'], jobNames: ['build'], redis: { prefix: 'jq' } }).queues,
    ).toEqual(['reports']);
    const secret = 'redis://:hunter2@10.0.0.1:7000/3';
    const problems = problemsOf(() => validateJobQueueOptions({ backend: 'bullmq', redis: { clusterNodes: [secret, 'not a url'] } }));
    expect(problems).toEqual([expect.stringContaining('"redis.clusterNodes"')]);
    expect(problems.join(' ')).not.toContain('hunter2');
    expect(problemsOf(() => validateJobQueueOptions({ backend: 'bullmq', redis: { prefix: '{a}{b}' } }))).toEqual([
      expect.stringContaining('"redis.prefix"'),
    ]);
  });

  it('replica acks are checked: 0 to 5 replicas, a timeout of 1 to 5000 ms', () => {
    expect(validateJobQueueOptions({ backend: 'bullmq' }).redis).toMatchObject({ replicaAcks: 0, replicaAckTimeoutMs: 1000 });
    expect(
      problemsOf(() => validateJobQueueOptions({ backend: 'bullmq', redis: { replicaAcks: 6, replicaAckTimeoutMs: 10_000 } })),
    ).toEqual([expect.stringContaining('"redis.replicaAcks"'), expect.stringContaining('"redis.replicaAckTimeoutMs"')]);
  });

  it("the failover budget: REDIS_FAILOVER_TIMEOUT_MS, 1000 to 600000 ms (default 20000), sizes a worker connection's redirections", async () => {
    expect(validateJobQueueOptions({ backend: 'bullmq' }).redis.failoverTimeoutMs).toBe(20_000);
    const fromEnv = (value: string) =>
      validateJobQueueOptions({ ...jobQueueOptionsFromEnv(env({ REDIS_FAILOVER_TIMEOUT_MS: value })), backend: 'bullmq' });
    expect(fromEnv('45000').redis.failoverTimeoutMs).toBe(45_000);
    for (const bad of ['999', '10s', '600001']) {
      expect(problemsOf(() => fromEnv(bad))).toEqual([
        expect.stringContaining('"redis.failoverTimeoutMs" (REDIS_FAILOVER_TIMEOUT_MS) must be an integer from 1000 to 600000'),
      ]);
    }
    // Two redirections per 100 ms try, plus ioredis' own 16.
    expect(clusterFailoverOptions(10_000)).toEqual({
      maxRedirections: 216,
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
    });
    expect(() => clusterFailoverOptions(500)).toThrow(
      '"failoverTimeoutMs" (REDIS_FAILOVER_TIMEOUT_MS) must be an integer from 1000 to 600000 (got 500)',
    );
    // Checked before anything connects (nothing listens on port 1).
    await expect(bullModuleClusterConnection(['redis://127.0.0.1:1'], { failoverTimeoutMs: 0 })).rejects.toThrow(
      InvalidJobQueueOptionsError,
    );
  });

  it("BullModule's ioredis Cluster gives its start nodes and credentials (host/port objects or URLs)", () => {
    const cluster = new Cluster([{ host: '10.0.0.1', port: 7000 }, 'redis://:p%40ss@10.0.0.2:7001'], {
      lazyConnect: true,
      redisOptions: { password: 'p@ss' },
    });
    try {
      const options = withBullSharedConfig({ backend: 'bullmq' }, { connection: cluster as never, prefix: '{bull}' });
      expect(options.redis).toEqual({ clusterNodes: ['redis://:p%40ss@10.0.0.1:7000', 'redis://:p%40ss@10.0.0.2:7001'], prefix: '{bull}' });
    } finally {
      cluster.disconnect();
    }
  });
});
