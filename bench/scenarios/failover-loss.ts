import { DEFAULT_QUEUE, RedisKeys } from 'nestjs-job-streams';
import type { LibraryConfig } from '../roles/library.js';
import type { StreamComparison } from '../roles/received-events.js';
import { BenchCluster } from '../support/bench-cluster.js';
import { now, sleep } from '../support/clock.js';
import { RoleProcess } from '../support/rpc.js';
import { median, round } from '../support/stats.js';

/** What fails, in the order the faults take turns. */
export const FAILOVER_FAULTS = {
  /** The master's process is SIGKILLed, then started again. */
  kill: 'kill',
  /** The master is cut off from the other nodes (clients still reach it), then the cut heals. */
  partition: 'partition',
} as const;

/** One failure of the master holding a running job's keys. */
export interface FailoverRun extends Omit<StreamComparison, 'terminalAt'> {
  /** Events the follower had received when the master failed. */
  receivedAtFault: number;
  /** From the fault until the other nodes flagged the master failed and its replica served its slots, in s. */
  failoverSec: number;
  /** From the fault until the follower received the job's terminal event, in s (NaN without one). */
  terminalSec: number;
  /** Jobs skipped before this one; always 0 since a job's keys share the slot of its BullMQ keys (kept for older results). */
  skippedJobs: number;
}

/** One fault with one setting of `replicaAcks`, repeated. */
export interface FailoverCase {
  fault: string;
  /** The module's `redis.replicaAcks` in this case's processes. */
  replicaAcks: number;
  label: string;
  runs: FailoverRun[];
  /** Median and max over the runs of {@link StreamComparison.missing}. */
  missing: { median: number; max: number };
  /** Median and max over the runs of {@link StreamComparison.seenThenLost}. */
  seenThenLost: { median: number; max: number };
  /** Runs after which the job completed with every emitted event in its stream once (and no new attempt). */
  intact: number;
}

/** What {@link failoverLoss} measured, with the sizes it ran with. */
export interface FailoverLossResult {
  /** The cluster's `cluster-node-timeout`, in ms. */
  nodeTimeoutMs: number;
  /** Token events each job emits. */
  eventsPerJob: number;
  /** The rate the handler emits them at, per second. */
  ratePerSec: number;
  /** The follower's count of received events at which the master fails. */
  faultAfterEvents: number;
  cases: FailoverCase[];
}

/** How often {@link failoverLoss} fails a master, and where it reports each run. */
export interface FailoverLossOptions {
  /** Runs per case; the cases take turns. */
  runs: number;
  log(line: string): void;
}

/**
 * Short enough for a failover in about two seconds, long enough that the pauses of a loaded
 * 2-core machine do not fail a node over by themselves.
 */
const NODE_TIMEOUT_MS = 1000;
const RATE_PER_SEC = 5000;
/** Three seconds of events: the job still emits when a cut-off master stops taking writes. */
const EVENTS_PER_JOB = 15_000;
/** Half a second in. */
const FAULT_AFTER_EVENTS = 2500;
const TIMEOUT_MS = 30_000;
/** How often the follower's count is asked for while waiting for the fault point. */
const POLL_MS = 2;

const CASES = [
  { fault: FAILOVER_FAULTS.kill, replicaAcks: 0, label: 'SIGKILL, no replica acks', prefix: '{bench-fo}kill' },
  { fault: FAILOVER_FAULTS.kill, replicaAcks: 1, label: 'SIGKILL, `replicaAcks: 1`', prefix: '{bench-fo}kill-acks' },
  { fault: FAILOVER_FAULTS.partition, replicaAcks: 0, label: 'partition, no replica acks', prefix: '{bench-fo}cut' },
  { fault: FAILOVER_FAULTS.partition, replicaAcks: 1, label: 'partition, `replicaAcks: 1`', prefix: '{bench-fo}cut-acks' },
] as const;

/** One case, the configuration of its processes and its api-only follower process. */
interface CaseRoles {
  spec: (typeof CASES)[number];
  config: LibraryConfig;
  follower: RoleProcess;
  runs: FailoverRun[];
}

/**
 * What a Redis Cluster failover loses of a running job's events. On a local cluster of 3 masters
 * with a replica each, behind a network this process can cut ({@link BenchCluster} partitionable),
 * a `@JobHandler` on a worker process emits events at a steady rate while an api-only process
 * follows the job, keeping every event id it receives. Half a second in, the master serving the
 * job's keys fails: SIGKILLed (started again once its replica is promoted), or cut off from the
 * other nodes with its clients still reaching it (healed once its replica is promoted). Either
 * way it comes back as the new master's replica, which `replicaAcks: 1` needs to go on writing.
 * Once the job ended, its stream is read from the start and compared with the handler's sequence
 * numbers and with what the follower received. A job's keys lie in the slot of its BullMQ keys,
 * so the master that fails is BullMQ's master of the queue too: BullMQ's own commands (the lock's
 * renewal, the move to completed) go through the same failover. Each run has a worker process of its own: one that has
 * lived through failovers of other masters while waiting for jobs can stop taking any (BullMQ's
 * blocking connection on Redis Cluster does not always come back), which is not what is measured
 * here. Each fault without replica acks and with `replicaAcks: 1`, the four cases taking turns.
 * Starts and stops the cluster.
 */
export async function failoverLoss(options: FailoverLossOptions): Promise<FailoverLossResult> {
  const cluster = await BenchCluster.start({ nodeTimeoutMs: NODE_TIMEOUT_MS, partitionable: true });
  const roles: RoleProcess[] = [];
  try {
    // The followers start side by side: each one's start (a Nest application context) is what takes time.
    const cases = await Promise.all(
      CASES.map(async (spec): Promise<CaseRoles> => {
        const config: LibraryConfig = { backend: 'bullmq', clusterNodes: cluster.urls, prefix: spec.prefix, replicaAcks: spec.replicaAcks };
        const follower = await RoleProcess.start('library', { ...config, worker: false });
        roles.push(follower);
        return { spec, config, follower, runs: [] };
      }),
    );
    for (let round = 0; round < options.runs; round++) {
      for (const entry of cases) {
        const run = await failDuringJob(cluster, entry);
        entry.runs.push(run);
        options.log(
          `  ${entry.spec.label}, run ${round + 1}: ${run.missing} of ${run.emitted} events lost, ` +
            `${run.seenThenLost} seen by the follower then lost, ${run.receivedTwice} received twice; ` +
            `job ${run.state}, ${run.attempts} attempt(s); failover ${run.failoverSec} s, terminal event ${run.terminalSec} s after the fault`,
        );
      }
    }
    return {
      nodeTimeoutMs: NODE_TIMEOUT_MS,
      eventsPerJob: EVENTS_PER_JOB,
      ratePerSec: RATE_PER_SEC,
      faultAfterEvents: FAULT_AFTER_EVENTS,
      cases: cases.map(({ spec, runs }) => ({
        fault: spec.fault,
        replicaAcks: spec.replicaAcks,
        label: spec.label,
        runs,
        missing: spread(runs.map((run) => run.missing)),
        seenThenLost: spread(runs.map((run) => run.seenThenLost)),
        intact: runs.filter((run) => run.state === 'completed' && run.attempts === 1 && !run.missing && !run.storedTwice).length,
      })),
    };
  } finally {
    await Promise.all(roles.map((role) => role.stop()));
    await cluster.stop();
  }
}

/**
 * One run: a job on a master other than BullMQ's, followed; that master failed once the follower
 * has {@link FAULT_AFTER_EVENTS}; its replica promoted, the master back and synced as its
 * replica; then the follower's events against the stream.
 */
async function failDuringJob(cluster: BenchCluster, { spec, config, follower }: CaseRoles): Promise<FailoverRun> {
  const worker = await RoleProcess.start('library', { ...config, worker: true });
  try {
    return await failWhileFollowing(cluster, spec, follower);
  } finally {
    await worker.stop();
  }
}

async function failWhileFollowing(cluster: BenchCluster, spec: CaseRoles['spec'], follower: RoleProcess): Promise<FailoverRun> {
  const keys = new RedisKeys(spec.prefix);
  const jobId = await follower.call<string>('enqueue', { mode: 'paced', n: EVENTS_PER_JOB, rate: RATE_PER_SEC });
  // The job's keys lie in the slot of its BullMQ keys: this master is BullMQ's of the queue too.
  const victim = await cluster.masterOf(keys.events(DEFAULT_QUEUE, jobId));
  await follower.call('recordEvents', { jobId });
  let received = 0;
  const deadline = now() + TIMEOUT_MS;
  while (received < FAULT_AFTER_EVENTS) {
    if (now() > deadline) {
      const state = await follower.call<string>('jobState', { jobId });
      throw new Error(`the follower of job ${jobId} (${state}) got only ${received} events in ${TIMEOUT_MS} ms`);
    }
    await sleep(POLL_MS);
    received = await follower.call<number>('recordedEvents', { jobId });
  }
  const failedAt = now();
  if (spec.fault === FAILOVER_FAULTS.kill) await cluster.kill(victim);
  else cluster.isolate(victim);
  await cluster.waitForFailover(victim);
  const failoverSec = round((now() - failedAt) / 1000);
  if (spec.fault === FAILOVER_FAULTS.kill) await cluster.restart(victim);
  else cluster.heal();
  await cluster.waitUntilReady();
  const { terminalAt, ...comparison } = await follower.call<StreamComparison>('compareRecorded', {
    jobId,
    emitted: EVENTS_PER_JOB,
    timeoutMs: TIMEOUT_MS,
  });
  return { ...comparison, receivedAtFault: received, failoverSec, terminalSec: round((terminalAt - failedAt) / 1000), skippedJobs: 0 };
}

function spread(values: number[]): { median: number; max: number } {
  return { median: median(values), max: Math.max(...values) };
}
