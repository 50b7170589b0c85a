import { Injectable } from '@nestjs/common';
import { JobHandler, type JobContext } from 'nestjs-job-streams';
import { paced, sleep } from '../support/clock.js';
import { EVENT_TYPE, tokenData } from '../support/payload.js';
import { heldJobs } from './held-jobs.js';

export const BENCH_JOBS = {
  /** Emits `n` events as fast as the handler can, awaiting each `emit` (as a handler normally would). */
  burst: 'bench.burst',
  /** Emits `n` events at `rate` per second. */
  paced: 'bench.paced',
  /** Emits at `rate` per second until {@link fanOutState}.stop is set. */
  fanOut: 'bench.fan-out',
  /** Does nothing. */
  noop: 'bench.noop',
  /** Emits nothing and holds its worker's slot until {@link heldJobs} is released or it is cancelled. */
  held: 'bench.held',
} as const;

/** Shared by the fan-out handlers of this process and the role that drives them. */
export const fanOutState = { running: 0, emitted: 0, stop: false };

@Injectable()
export class BenchHandlers {
  @JobHandler(BENCH_JOBS.burst)
  async burst(ctx: JobContext<{ n: number }>): Promise<null> {
    for (let i = 0; i < ctx.data.n; i++) await ctx.emit(EVENT_TYPE, tokenData(i));
    return null;
  }

  @JobHandler(BENCH_JOBS.paced)
  async paced(ctx: JobContext<{ n: number; rate: number }>): Promise<null> {
    await paced(ctx.data.n, ctx.data.rate, (i, readyAt) => ctx.emit(EVENT_TYPE, tokenData(i, readyAt)));
    return null;
  }

  @JobHandler(BENCH_JOBS.fanOut)
  async fanOut(ctx: JobContext<{ rate: number }>): Promise<null> {
    const interval = 1000 / ctx.data.rate;
    fanOutState.running++;
    try {
      // A random phase, so that K jobs do not all emit in the same millisecond.
      await sleep(Math.random() * interval);
      for (let i = 0; !fanOutState.stop && !ctx.signal.aborted; i++) {
        await ctx.emit(EVENT_TYPE, tokenData(i));
        fanOutState.emitted++;
        await sleep(interval);
      }
    } finally {
      fanOutState.running--;
    }
    return null;
  }

  @JobHandler(BENCH_JOBS.noop)
  noop(): null {
    return null;
  }

  @JobHandler(BENCH_JOBS.held)
  async held(ctx: JobContext): Promise<null> {
    await heldJobs.hold(ctx.signal);
    return null;
  }
}
