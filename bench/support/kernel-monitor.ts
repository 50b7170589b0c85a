import { readFileSync, readdirSync } from 'node:fs';
import { now } from './clock.js';
import { cpuMs } from './proc.js';

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

/** CPU time of `pid` so far, in ms; undefined for a thread gone or unreadable. */
function cpuMsOf(pid: number): number | undefined {
  try {
    const ms = cpuMs(pid);
    return Number.isFinite(ms) ? ms : undefined;
  } catch {
    return undefined;
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
    /** CPU time of each `kdamond` thread at the start, by pid. */
    private readonly atStart: Map<number, number>,
    private readonly startMs: number,
  ) {}

  static start(): KernelMonitorProbe {
    const atStart = new Map<number, number>();
    for (const pid of kdamondPids()) {
      const ms = cpuMsOf(pid);
      if (ms !== undefined) atStart.set(pid, ms);
    }
    return new KernelMonitorProbe(atStart, now());
  }

  /**
   * The usage since {@link start}, over the threads that ran throughout; undefined when no
   * `kdamond` runs here (or its CPU time cannot be read). The DAMON attributes are those of the
   * first context of the first `kdamond` (`kdamonds/0`), where the admin interface shows them.
   */
  stop(): KernelMonitorUsage | undefined {
    let spent = 0;
    let threads = 0;
    for (const [pid, startMs] of this.atStart) {
      const ms = cpuMsOf(pid);
      if (ms === undefined) continue; // gone meanwhile
      spent += ms - startMs;
      threads++;
    }
    if (!threads) return undefined;
    const sampleUs = Number(sysfs(`${DAMON_CONTEXT}/monitoring_attrs/intervals/sample_us`));
    const operations = sysfs(`${DAMON_CONTEXT}/operations`);
    return {
      threads,
      ...(sampleUs > 0 ? { sampleMs: sampleUs / 1000 } : {}),
      ...(operations ? { operations } : {}),
      cpuMsPerSec: Math.round((spent / ((now() - this.startMs) / 1000)) * 100) / 100,
    };
  }
}
