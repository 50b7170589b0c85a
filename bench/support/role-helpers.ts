import { now } from './clock.js';

/** What the orchestrator asks a contender's consumer to run: one job, in a burst or paced. */
export interface RunParams {
  mode: 'burst' | 'paced';
  n: number;
  rate?: number;
  /** Leading events whose latency is not counted (warm-up). */
  skip?: number;
  /** Return every latency sample, to pool rounds. */
  keep?: boolean;
  timeoutMs: number;
}

/**
 * Calls `enqueueOne` `n` times with at most `inFlight` calls outstanding; returns how long that
 * took and the ids, in the order the calls were made.
 */
export async function enqueueConcurrently(
  n: number,
  inFlight: number,
  enqueueOne: () => Promise<string>,
): Promise<{ ms: number; ids: string[] }> {
  const start = now();
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (ids.length < n) {
        const slot = ids.push('') - 1;
        ids[slot] = await enqueueOne();
      }
    }),
  );
  return { ms: now() - start, ids };
}

/**
 * A CPU-per-delivery window of a follower process: `mark` starts it after a full GC (so earlier
 * garbage is not billed to it), `measure` ends it.
 */
export class DeliveryMeter {
  private start?: { cpu: NodeJS.CpuUsage; delivered: number; at: number };

  constructor(private readonly delivered: () => number) {}

  mark(): void {
    (globalThis as { gc?: () => void }).gc?.();
    this.start = { cpu: process.cpuUsage(), delivered: this.delivered(), at: now() };
  }

  measure(): { cpuMs: number; delivered: number; wallMs: number } {
    const start = this.start!;
    const cpu = process.cpuUsage(start.cpu);
    return { cpuMs: (cpu.user + cpu.system) / 1000, delivered: this.delivered() - start.delivered, wallMs: now() - start.at };
  }
}
