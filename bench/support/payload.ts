import { now } from './clock.js';
import { quantile } from './stats.js';

/** What every contender sends per event: the shape of the demo build's `token` event plus a send time. */
export interface TokenData {
  /** Sequence number within the run, from 0. */
  i: number;
  /** Send time on the shared monotonic clock ({@link now}); paced runs stamp when it was ready to go. */
  t: number;
  text: string;
}

export const EVENT_TYPE = 'token';

/** Event `i`, stamped with `t` (default: now). */
export function tokenData(i: number, t = now()): TokenData {
  return { i, t, text: `token ${i % 1000} of step ${Math.floor(i / 1000)}` };
}

/**
 * What a consumer records while receiving one run: checks order and completeness, and keeps the
 * latency of every event (receive time minus send time).
 */
export class Receipt {
  readonly latencies: number[] = [];
  firstSent = NaN;
  lastReceived = NaN;
  received = 0;
  /** Events that came out of order or twice. */
  misordered = 0;
  private expected = 0;
  private done?: () => void;
  readonly finished: Promise<void>;

  constructor(readonly total: number) {
    this.finished = new Promise((resolve) => (this.done = resolve));
    if (total === 0) this.done!();
  }

  /** One event, received at `at`. */
  add(data: TokenData, at: number): void {
    if (data.i !== this.expected) this.misordered++;
    this.expected = data.i + 1;
    if (data.i === 0) this.firstSent = data.t;
    this.latencies.push(at - data.t);
    this.received++;
    this.lastReceived = at;
    if (this.received >= this.total) this.done?.();
  }

  /** Waits for all events, or `timeoutMs`; never throws (a short count is reported as such). */
  async wait(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** The summary sent back to the orchestrator. */
  summary(skipFirst = 0, keepSamples = false): RunSummary {
    const latencies = this.latencies.slice(skipFirst);
    const durationMs = this.lastReceived - this.firstSent;
    return {
      sent: this.total,
      received: this.received,
      misordered: this.misordered,
      durationMs,
      eventsPerSec: this.received / (durationMs / 1000),
      latencyMs: { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), max: quantile(latencies, 1) },
      ...(keepSamples ? { latencySamples: latencies } : {}),
    };
  }
}

export interface RunSummary {
  sent: number;
  received: number;
  misordered: number;
  /** From the first event's send to the last event's receipt. */
  durationMs: number;
  eventsPerSec: number;
  /** Over the events after the warm-up ones. */
  latencyMs: { p50: number; p99: number; max: number };
  /** Every latency after the warm-up, when asked for (to pool several runs). */
  latencySamples?: number[];
}
