import type { RunSummary } from './payload.js';
import { cpuMs } from './proc.js';
import type { RoleProcess } from './rpc.js';
import { median, quantile, round } from './stats.js';

/** One way of getting a job's events from the producer process to a consumer process. */
export interface Contender {
  name: string;
  label: string;
  /** A diagnostic that only takes part in the latency rounds. */
  latencyOnly?: boolean;
  /** Events per throughput run: about a second or two of work at the contender's rate. */
  n: number;
  start(): Promise<Pair>;
}

/** A contender's running processes. */
export interface Pair {
  producer: RoleProcess;
  consumer: RoleProcess;
  /** Processes on the path between them, if any. */
  between?: RoleProcess[];
  /** One run: a burst of `n` events, or `n` events at `rate` per second (the first `skip` not timed). */
  run(n: number, rate: number | undefined, skip: number): Promise<RunSummary>;
}

/** Latency of paced rounds of one contender (see {@link pacedLatency}). */
export interface PacedLatency {
  ratePerSec: number;
  events: number;
  /** Over all rounds' events. */
  p50Ms: number;
  /**
   * The median of the rounds' p99s: a round hit by load from outside the benchmark (other
   * processes on a shared machine) does not decide it alone.
   */
  p99Ms: number;
  /** p99 over all rounds' events together. */
  pooledP99Ms: number;
  maxMs: number;
  /** p99 of each round on its own, to show the spread. */
  roundP99Ms: number[];
  complete: boolean;
}

/**
 * The latency of a contender's paced `rounds` at `ratePerSec` (each run with its samples kept):
 * p50, pooled p99 and max over all rounds' events, p99 as the median of the rounds' p99s.
 */
export function pacedLatency(rounds: RunSummary[], ratePerSec: number): PacedLatency {
  const samples = rounds.flatMap((summary) => summary.latencySamples ?? []);
  return {
    ratePerSec,
    events: samples.length,
    p50Ms: round(quantile(samples, 0.5)),
    p99Ms: round(median(rounds.map((summary) => summary.latencyMs.p99))),
    pooledP99Ms: round(quantile(samples, 0.99)),
    maxMs: round(quantile(samples, 1)),
    roundP99Ms: rounds.map((summary) => round(summary.latencyMs.p99)),
    complete: rounds.every(complete),
  };
}

export interface SingleJobResult {
  contender: string;
  label: string;
  /** None for the latency-only diagnostic. */
  throughput: {
    events: number;
    /** Median of the runs. */
    eventsPerSec: number;
    runs: number[];
    /** Every run delivered every event exactly once, in order. */
    complete: boolean;
    /**
     * CPU time per delivered event of every process on the path (producer, consumer, the ones in
     * between, and redis-server when its pid is given), median of the bursts, in µs. Unlike
     * events/s, it does not depend on how the machine schedules round trips.
     */
    cpuUsPerEvent: number;
  } | null;
  latency: PacedLatency;
}

/** How many runs of which size each contender gets. */
export interface SingleJobRoundsOptions {
  /** Bursts per contender (throughput). */
  repetitions: number;
  /** Paced runs: `latencyRounds` rounds of `latencyEvents` at `ratePerSec`, the first `warmupEvents` of each not counted. */
  ratePerSec: number;
  latencyRounds: number;
  latencyEvents: number;
  warmupEvents: number;
  /** Scales every contender's throughput run size (a quick run uses less). */
  scale: number;
  /** redis-server's process, to count its CPU time in the bursts' (one server only). */
  redisPid?: number;
  log(line: string): void;
}

/** True when a run delivered every event exactly once, in order. */
export function complete(summary: RunSummary): boolean {
  return summary.received === summary.sent && summary.misordered === 0;
}

/**
 * Runs `contenders` side by side: throughput of bursts and latency at a steady rate, one job per
 * run. Repetitions and latency rounds go round the contenders, so that a noisy moment of the
 * machine hits all of them alike; latencies of all rounds are pooled. Stops every process it
 * started.
 */
export async function runSingleJobRounds(contenders: readonly Contender[], options: SingleJobRoundsOptions): Promise<SingleJobResult[]> {
  const pairs = new Map<Contender, Pair>();
  const bursts = new Map<Contender, RunSummary[]>();
  const burstCpu = new Map<Contender, number[]>();
  const paced = new Map<Contender, RunSummary[]>();
  try {
    for (const contender of contenders) {
      const pair = await contender.start();
      pairs.set(contender, pair);
      bursts.set(contender, []);
      burstCpu.set(contender, []);
      paced.set(contender, []);
      // Warm-up: JIT, connections, scripts loaded. One burst of the measured size: a path through
      // several processes (the bridged ones have four) took until its third or fourth burst of a
      // fifth of that size to reach its steady rate, and a measured burst must not pay for it.
      if (contender.latencyOnly) await pair.run(500, 1000, 0);
      else await pair.run(Math.round(contender.n * options.scale), undefined, 0);
    }
    for (let rep = 0; rep < options.repetitions; rep++) {
      for (const contender of contenders) {
        if (contender.latencyOnly) continue;
        const pair = pairs.get(contender)!;
        const pids = [pair.producer, pair.consumer, ...(pair.between ?? [])].map((role) => role.pid);
        if (options.redisPid) pids.push(options.redisPid);
        const cpuBefore = pids.map(cpuMs);
        const summary = await pair.run(Math.round(contender.n * options.scale), undefined, 0);
        const cpuUs = (pids.reduce((sum, pid, i) => sum + cpuMs(pid) - cpuBefore[i], 0) * 1000) / Math.max(1, summary.received);
        bursts.get(contender)!.push(summary);
        burstCpu.get(contender)!.push(cpuUs);
        options.log(
          `  ${contender.name} burst ${rep + 1}: ${Math.round(summary.eventsPerSec)} events/s (${summary.received}/${summary.sent}), ${Math.round(cpuUs)} µs CPU/event`,
        );
      }
    }
    // Each paced round starts from collected heaps in both processes: the bursts before it, or
    // another contender's round, leave garbage whose collection would otherwise land in it.
    const settled = async (pair: Pair): Promise<void> => {
      await Promise.all([pair.producer, pair.consumer, ...(pair.between ?? [])].map((role) => role.call('collectGarbage')));
    };
    // One unmeasured paced round each after the bursts, to reach a steady state.
    for (const contender of contenders) {
      await settled(pairs.get(contender)!);
      await pairs.get(contender)!.run(options.warmupEvents * 2, options.ratePerSec, 0);
    }
    for (let round = 0; round < options.latencyRounds; round++) {
      for (const contender of contenders) {
        await settled(pairs.get(contender)!);
        const summary = await pairs.get(contender)!.run(options.latencyEvents, options.ratePerSec, options.warmupEvents);
        paced.get(contender)!.push(summary);
        options.log(
          `  ${contender.name} at ${options.ratePerSec}/s, round ${round + 1}: p50 ${summary.latencyMs.p50.toFixed(3)} ms, p99 ${summary.latencyMs.p99.toFixed(3)} ms (${summary.received}/${summary.sent})`,
        );
      }
    }
    return contenders.map((contender) => {
      const runs = bursts.get(contender)!;
      const rounds = paced.get(contender)!;
      return {
        contender: contender.name,
        label: contender.label,
        throughput: runs.length
          ? {
              events: runs[0].sent,
              eventsPerSec: round(median(runs.map((run) => run.eventsPerSec))),
              runs: runs.map((run) => round(run.eventsPerSec)),
              complete: runs.every(complete),
              cpuUsPerEvent: round(median(burstCpu.get(contender)!)),
            }
          : null,
        latency: pacedLatency(rounds, options.ratePerSec),
      };
    });
  } finally {
    for (const pair of pairs.values())
      await Promise.all([pair.producer, pair.consumer, ...(pair.between ?? [])].map((role) => role.stop()));
  }
}
