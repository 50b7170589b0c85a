import { readFileSync } from 'node:fs';

/** Memory of a process as the kernel counts it (Linux `/proc/<pid>/status`), in bytes. */
export interface ProcessMemory {
  /** Resident set size now (`VmRSS`). */
  rss: number;
  /** The highest resident set size since the process started (`VmHWM`). */
  hwm: number;
}

/** Reads `VmRSS` and `VmHWM` of `pid`; throws when the process is gone. */
export function processMemory(pid: number): ProcessMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+([0-9]+) kB$`, 'm').exec(status);
    if (!match) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

export const MiB = 1024 * 1024;

/** Bytes as MiB with one decimal, for reports. */
export function mib(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

/**
 * Samples the RSS of some processes at a fixed interval from outside (nothing runs inside the
 * processes, so measuring does not change what is measured); keeps the highest sample of each.
 */
export class RssSampler {
  readonly peak = new Map<number, number>();
  samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: readonly number[],
    intervalMs = 50,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Stops sampling (after one last sample) and returns the peak RSS per pid. */
  stop(): Map<number, number> {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }

  private sample(): void {
    this.samples++;
    for (const pid of this.pids) {
      let rss: number;
      try {
        rss = processMemory(pid).rss;
      } catch {
        continue; // exited; the test notices that by itself
      }
      if (rss > (this.peak.get(pid) ?? 0)) this.peak.set(pid, rss);
    }
  }
}
