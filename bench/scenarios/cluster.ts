import { BenchCluster } from '../support/bench-cluster.js';
import { now } from '../support/clock.js';
import { runSingleJobRounds, type Contender, type SingleJobResult, type SingleJobRoundsOptions } from '../support/single-job-rounds.js';
import { round } from '../support/stats.js';
import { LIBRARY_BURST_EVENTS, libraryPair } from './single-job.js';

/** Names of this scenario's contenders, in the order they run. */
export const CLUSTER_CONTENDERS = {
  oneNode: 'library-one-node',
  cluster: 'library-cluster',
  clusterReplicaAcks: 'library-cluster-replica-acks',
} as const;

export interface ClusterResult {
  masters: number;
  /** Replicas per master. */
  replicasPerMaster: number;
  /** How long the cluster took to start, join and sync its replicas (not part of any measurement), in s. */
  startSec: number;
  /** This library's single-job contender on one node, on the cluster, and on the cluster with `replicaAcks: 1`. */
  contenders: SingleJobResult[];
}

export interface ClusterOptions extends SingleJobRoundsOptions {
  /** The benchmark's one redis-server, for the one-node contender. */
  redisUrl: string;
}

/**
 * Hash-tag prefixes, as Redis Cluster needs for BullMQ's keys (one on one node too, so that every
 * contender writes keys of the same shape). One per contender: two contenders on one prefix would
 * share a queue, and one's workers would run the other's jobs.
 */
const PREFIXES = { oneNode: '{bench-node}', cluster: '{bench-cluster}', clusterReplicaAcks: '{bench-acks}' } as const;

/**
 * This library's single-job contender (a `@JobHandler` on a worker process, followed by an
 * api-only process) on one redis-server and on a local Redis Cluster of 3 masters with a replica
 * each, in the same run with the same sizes; then on the cluster again with `replicaAcks: 1` (a
 * `WAIT 1` after each write of a job's events), which is what closing the failover window costs.
 * Runs go round the three contenders, as in the single-job scenario. Starts and stops the cluster.
 */
export async function cluster(options: ClusterOptions): Promise<ClusterResult> {
  const began = now();
  const nodes = await BenchCluster.start();
  const startSec = round((now() - began) / 1000);
  options.log(`  cluster of 3 masters and 3 replicas ready in ${startSec} s`);
  try {
    const contenders: Contender[] = [
      {
        name: CLUSTER_CONTENDERS.oneNode,
        label: 'this library on one redis-server',
        n: LIBRARY_BURST_EVENTS,
        start: () => libraryPair({ redisUrl: options.redisUrl, prefix: PREFIXES.oneNode }),
      },
      {
        name: CLUSTER_CONTENDERS.cluster,
        label: 'this library on Redis Cluster (3 masters, 3 replicas)',
        n: LIBRARY_BURST_EVENTS,
        start: () => libraryPair({ clusterNodes: nodes.urls, prefix: PREFIXES.cluster }),
      },
      {
        name: CLUSTER_CONTENDERS.clusterReplicaAcks,
        label: 'this library on Redis Cluster, `replicaAcks: 1`',
        n: LIBRARY_BURST_EVENTS,
        start: () => libraryPair({ clusterNodes: nodes.urls, prefix: PREFIXES.clusterReplicaAcks, replicaAcks: 1 }),
      },
    ];
    return { masters: 3, replicasPerMaster: 1, startSec, contenders: await runSingleJobRounds(contenders, options) };
  } finally {
    await nodes.stop();
  }
}
