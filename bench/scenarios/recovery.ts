import { Redis } from 'ioredis';
import { validateJobQueueOptions } from 'nestjs-job-streams';
import { now, sleep, waitFor } from '../support/clock.js';
import { RoleProcess } from '../support/rpc.js';
import { median, round } from '../support/stats.js';

export interface RecoveryResult {
  /** The library's default lock, which the workers ran with (no lock or stalled-check option set). */
  lockDurationMs: number;
  /** From each SIGKILL to the follower's receipt of the job's `started` event of attempt 2, in ms. */
  runsMs: number[];
  medianMs: number;
  maxMs: number;
}

export interface RecoveryOptions {
  redisUrl: string;
  /** Workers killed, one job each. */
  kills: number;
  log(line: string): void;
}

/** Long enough for any lock and stalled check the defaults could give; a miss fails the scenario. */
const RESTART_TIMEOUT_MS = 60_000;

/**
 * The period of the stalled check with the default lock (every min(lock, 4 s)). A spare worker
 * checks at once when it starts, then every period: a holder killed as soon as the spare is ready
 * would always die at the same point of that cycle (and of its own lock renewals, every quarter of
 * the lock). A random wait of up to one period puts the kill anywhere in both cycles, as in a
 * deployment whose workers run for hours before one dies.
 */
const PHASE_RANGE_MS = 4000;

/**
 * A worker running a job dies by SIGKILL: how long until another worker starts the job again?
 * Worker processes run the library with its defaults. Each round, the one live worker takes a new
 * job that holds it (no events), a spare worker joins, the first one is killed at a random point
 * of the spare's stalled-check cycle, and a follower in an api-only process times the job's
 * `started` event of attempt 2 from the kill. The spare is the live worker of the next round.
 */
export async function recovery(options: RecoveryOptions): Promise<RecoveryResult> {
  const admin = new Redis(options.redisUrl);
  const config = { backend: 'bullmq', redisUrl: options.redisUrl, prefix: 'bench-recovery' };
  const roles: RoleProcess[] = [];
  const start = async (worker: boolean): Promise<RoleProcess> => {
    const role = await RoleProcess.start('library', { ...config, worker });
    roles.push(role);
    return role;
  };
  try {
    await admin.flushall();
    const follower = await start(false);
    let holder = await start(true);
    const runsMs: number[] = [];
    for (let kill = 0; kill < options.kills; kill++) {
      const [jobId] = await follower.call<string[]>('enqueueHeld', { n: 1 });
      await follower.call('attemptStartedAt', { jobId, attempt: 1, timeoutMs: 30_000 });
      const spare = await start(true);
      await sleep(Math.random() * PHASE_RANGE_MS);
      const restarted = follower.call<number>('attemptStartedAt', { jobId, attempt: 2, timeoutMs: RESTART_TIMEOUT_MS });
      const killedAt = now();
      await holder.kill();
      const afterMs = (await restarted) - killedAt;
      // Attempt 2 runs on the spare: the only worker left.
      await waitFor('attempt 2 running on the spare worker', async () => (await spare.call<number>('heldRunning')) === 1, 5000);
      runsMs.push(afterMs);
      options.log(`  kill ${kill + 1}: attempt 2 started ${(afterMs / 1000).toFixed(2)} s after the SIGKILL`);
      await follower.call('cancel', { jobId });
      await waitFor('the cancelled job to return', async () => (await spare.call<number>('heldRunning')) === 0, 10_000);
      holder = spare;
    }
    return {
      lockDurationMs: validateJobQueueOptions({ backend: 'bullmq' }).lockDurationMs,
      runsMs: runsMs.map((ms) => round(ms)),
      medianMs: round(median(runsMs)),
      maxMs: round(Math.max(...runsMs)),
    };
  } finally {
    await Promise.all(roles.map((role) => role.stop()));
    admin.disconnect();
  }
}
