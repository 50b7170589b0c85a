import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Milliseconds on the system-wide monotonic clock (`CLOCK_MONOTONIC`), with sub-microsecond
 * resolution. The same clock in every process of this machine, so a time stamped by a producer
 * process can be compared with one taken by a consumer process.
 */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export { sleep };

/** Waits until `check()` is true, polling every `everyMs`; throws after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<void> {
  const deadline = now() + timeoutMs;
  while (!(await check())) {
    if (now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Calls `emit(i, readyAt)` for i = 0..n-1 at `ratePerSec`, each at its due time (start + i / rate).
 * Node's timers have a 1 ms granularity, so events that fell due during a sleep go out back to back.
 *
 * `readyAt` is when the event was ready to go: its due time, or the end of the sleep it fell due in
 * when the timer woke late. A producer still waiting on its previous send when an event falls due
 * thus has that wait counted in the event's latency (no coordinated omission), while the timer's
 * own lateness, the same for every contender, is not.
 */
export async function paced(n: number, ratePerSec: number, emit: (i: number, readyAt: number) => unknown): Promise<void> {
  const interval = 1000 / ratePerSec;
  const start = now();
  let woke = start;
  for (let i = 0; i < n; i++) {
    const due = start + i * interval;
    const wait = due - now();
    if (wait > 0.05) {
      await sleep(wait);
      woke = now();
    }
    await emit(i, Math.max(due, woke));
  }
}
