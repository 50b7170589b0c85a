import { readFileSync, readdirSync } from 'node:fs';
import { now } from './clock.js';

/** What the kernel's DAMON memory-access monitor took from the machine during a run. */
export interface KernelMonitorUsage {
  /** `kdamond` threads found. */
  threads: number;
  /** How often DAMON samples memory (its first context), in ms, where sysfs shows it. */
  sampleMs?: number;
  /** What it monitors: `paddr` (all physical memory, every process' pages) or `vaddr`/`fvaddr` (chosen processes). */
  operations?: string;
  /** CPU time of the `kdamond` threads per second of the run, in ms. */
  cpuMsPerSec: number;
}

const DAMON_CONTEXT = '/sys/kernel/mm/damon/admin/kdamonds/0/contexts/0';

/** The pids of the `kdamond` kernel threads. */
function kdamondPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').startsWith('kdamond')) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** CPU time of `pid` so far, in ms (`/proc/<pid>/schedstat`: time on a CPU, in ns). */
function cpuMs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return 0;
  }
}

function sysfs(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Measures the CPU that the kernel's DAMON monitor (`kdamond` threads) takes during a run. On a
 * small VM whose host reclaims memory with DAMON over physical memory, `kdamond` wakes every
 * sampling interval and takes one CPU for milliseconds at a time: every process of the run stalls
 * or shares the other core meanwhile, which sets the p99 of the paced rounds. The bench reports it
 * next to the machine so that a run's tail latencies can be read against it.
 */
export class KernelMonitorProbe {
  private constructor(
    private readonly pids: number[],
    private readonly startMs: number,
    private readonly startCpuMs: number,
  ) {}

  static start(): KernelMonitorProbe {
    const pids = kdamondPids();
    return new KernelMonitorProbe(
      pids,
      now(),
      pids.reduce((sum, pid) => sum + cpuMs(pid), 0),
    );
  }

  /** The usage since {@link start}; undefined when no `kdamond` runs on this machine. */
  stop(): KernelMonitorUsage | undefined {
    if (!this.pids.length) return undefined;
    const spent = this.pids.reduce((sum, pid) => sum + cpuMs(pid), 0) - this.startCpuMs;
    const sampleUs = Number(sysfs(`${DAMON_CONTEXT}/monitoring_attrs/intervals/sample_us`));
    return {
      threads: this.pids.length,
      ...(sampleUs > 0 ? { sampleMs: sampleUs / 1000 } : {}),
      ...(sysfs(`${DAMON_CONTEXT}/operations`) ? { operations: sysfs(`${DAMON_CONTEXT}/operations`) } : {}),
      cpuMsPerSec: Math.round((spent / ((now() - this.startMs) / 1000)) * 100) / 100,
    };
  }
}
