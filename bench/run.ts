import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, release, totalmem, type } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { format, resolveConfig } from 'prettier';
import { evaluateTargets, markdown, updateReadme, type BenchResults, type Machine } from './report.js';
import { cluster } from './scenarios/cluster.js';
import { failoverLoss } from './scenarios/failover-loss.js';
import { fanOut } from './scenarios/fan-out.js';
import { foreignSse } from './scenarios/foreign-sse.js';
import { httpLatency } from './scenarios/http-latency.js';
import { idleSse } from './scenarios/idle-sse.js';
import { jobThroughput } from './scenarios/job-throughput.js';
import { lockCost } from './scenarios/lock-cost.js';
import { memoryBackend } from './scenarios/memory-backend.js';
import { recovery } from './scenarios/recovery.js';
import { singleJob } from './scenarios/single-job.js';
import { now } from './support/clock.js';
import { KernelMonitorProbe } from './support/kernel-monitor.js';
import { BenchRedis } from './support/redis-server.js';
import type { SingleJobRoundsOptions } from './support/single-job-rounds.js';

/** The repository root (this file runs as dist/bench/run.js). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * `npm run bench`: every scenario in one run against one fresh redis-server, one after the other
 * (the machine has few cores: scenarios must not compete). Writes bench/results/<date>.json,
 * bench/results/latest.json and the generated part of the README's Benchmarks section.
 *
 * `BENCH_QUICK=1` shrinks every scenario for a smoke test and writes to bench/.tmp/ instead.
 */
async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === '1';
  const startedAt = new Date();
  const start = now();
  const log = (line: string): void => console.log(line);
  const redis = await BenchRedis.start();
  try {
    const machine = await describeMachine(redis.url);
    const kernelMonitor = KernelMonitorProbe.start();
    log(`Machine: ${machine.nproc} x ${machine.cpuModel}, Node ${machine.node}, Redis ${machine.redis}`);
    const section = async <T>(title: string, run: () => Promise<T>): Promise<T> => {
      const began = now();
      log(`${title}...`);
      const result = await run();
      log(`  (${Math.round((now() - began) / 1000)} s)`);
      return result;
    };

    // The sizes of one-job runs, the same in both scenarios that make them. Bursts of the
    // contenders whose throughput is bound by round trips (every BullMQ one) vary by up to 40% from
    // one burst to the next on a small VM: the median of 3 was left to chance, the median of 9
    // moves far less between runs.
    const oneJobRuns = (latencyRounds: number): SingleJobRoundsOptions => ({
      repetitions: quick ? 1 : 9,
      ratePerSec: 1000,
      latencyRounds: quick ? 1 : latencyRounds,
      latencyEvents: quick ? 700 : 1700,
      warmupEvents: 200,
      scale: quick ? 0.1 : 1,
      log,
    });
    const single = await section('One job, handler to a consumer in another process', () =>
      singleJob({ redisUrl: redis.url, redisPid: redis.pid, ...oneJobRuns(9) }),
    );
    // About 25 s: 2 contenders, 7 paced rounds of under 2 s each (one of them a warm-up), no GC forced.
    const http = await section('Latency through one HTTP hop, without forced garbage collection', () =>
      httpLatency({
        redisUrl: redis.url,
        ratePerSec: 1000,
        rounds: quick ? 1 : 6,
        eventsPerRound: quick ? 700 : 1700,
        warmupEvents: 200,
        log,
      }),
    );
    // About 40 s: two demo apis, a plain worker, QueueEvents and a client start; 7 bursts of about
    // 1.5 s and 7 paced rounds of 1.7 s, each read by both paths at once.
    const foreign = await section('Foreign workers: a plain worker to an SSE client on another api, against QueueEvents', () =>
      foreignSse({
        redisUrl: redis.url,
        bursts: quick ? 1 : 7,
        burstUpdates: quick ? 1000 : 5000,
        ratePerSec: 1000,
        rounds: quick ? 1 : 7,
        roundUpdates: quick ? 700 : 1700,
        warmupUpdates: 200,
        log,
      }),
    );
    // About a minute: 2 s to start the cluster, then 3 contenders. Bursts are cheap (half a second
    // each), paced rounds are not (about 2 s each): 7 rounds, not 9.
    const onCluster = await section('One job on Redis Cluster against one node', () => cluster({ redisUrl: redis.url, ...oneJobRuns(7) }));
    // About 80 s: a cluster of its own, then 4 cases of 4 runs, each run about 5 s (a worker
    // process starts, half a second of events, a failover in about 2 s, the failed node back and synced).
    const failover = await section("Failover of a running job's master on Redis Cluster", () => failoverLoss({ runs: quick ? 1 : 4, log }));
    const fan = await section('Fan-out: CPU per delivered event as concurrent jobs grow', () =>
      fanOut({ redisUrl: redis.url, ks: quick ? [1, 100] : [1, 10, 100, 1000], ratePerJob: 10, windowMs: quick ? 2000 : 8000, log }),
    );
    const jobs = await section('No-op job throughput', () =>
      jobThroughput({
        redisUrl: redis.url,
        redisPid: redis.pid,
        jobs: quick ? 500 : 4000,
        repetitions: quick ? 1 : 5,
        concurrency: 10,
        inFlight: 50,
        log,
      }),
    );
    const sse = await section('Idle SSE followers on one api process', () =>
      idleSse({ redisUrl: redis.url, followers: quick ? 100 : 1000, log }),
    );
    const memory = await section('Memory backend', () => memoryBackend({ events: quick ? 5000 : 50_000, repetitions: 3, log }));
    // With the library's defaults: 5 kills take about a minute (the lock must run out each time).
    const recovered = await section('Recovery after SIGKILL of a worker running a job', () =>
      recovery({ redisUrl: redis.url, kills: quick ? 1 : 5, log }),
    );
    const locks = await section('Redis cost of the lock per running job', () =>
      lockCost({
        redisUrl: redis.url,
        workers: 2,
        jobs: quick ? 100 : 1000,
        minWindowMs: quick ? 2000 : 7000,
        idleWindowMs: quick ? 1000 : 2000,
        log,
      }),
    );

    const partial = {
      startedAt: startedAt.toISOString(),
      durationSec: Math.round((now() - start) / 1000),
      machine,
      kernelMonitor: kernelMonitor.stop(),
      singleJob: single,
      httpLatency: http,
      foreignSse: foreign,
      cluster: onCluster,
      failoverLoss: failover,
      fanOut: fan,
      jobThroughput: jobs,
      idleSse: sse,
      memoryBackend: memory,
      recovery: recovered,
      lockCost: locks,
    };
    const results: BenchResults = { ...partial, targets: evaluateTargets(partial) };
    const json = `${JSON.stringify(results, null, 2)}\n`;
    // Formatted as `npm run lint` (prettier) wants it, so that a run leaves the README lint-clean.
    const table = (await format(markdown(results), { ...(await resolveConfig(`${ROOT}README.md`)), parser: 'markdown' })).trimEnd();
    const dir = `${ROOT}bench/${quick ? '.tmp' : 'results'}`;
    mkdirSync(dir, { recursive: true });
    const stamp = startedAt
      .toISOString()
      .replace(/:/g, '-')
      .replace(/\.\d+Z$/, 'Z');
    writeFileSync(`${dir}/${stamp}.json`, json);
    writeFileSync(`${dir}/latest.json`, json);
    if (quick) writeFileSync(`${dir}/latest.md`, `${table}\n`);
    else writeFileSync(`${ROOT}README.md`, updateReadme(readFileSync(`${ROOT}README.md`, 'utf8'), table));
    log('');
    log(table);
    log('');
    log(`Wrote ${dir}/${stamp}.json, ${dir}/latest.json${quick ? ` and ${dir}/latest.md` : ' and the Benchmarks section of README.md'}`);
    log(`Took ${Math.round((now() - start) / 1000)} s`);
  } finally {
    await redis.stop();
  }
}

async function describeMachine(redisUrl: string): Promise<Machine> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const admin = new Redis(redisUrl);
  const info = await admin.info('server');
  admin.disconnect();
  let nproc = availableParallelism();
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    // availableParallelism is the same number where nproc is missing.
  }
  return {
    nproc,
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown CPU',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    os: `${type()} ${release()}`,
  };
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
