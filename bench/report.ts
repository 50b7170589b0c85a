import { CLUSTER_CONTENDERS, type ClusterResult } from './scenarios/cluster.js';
import { FAILOVER_FAULTS, type FailoverLossResult } from './scenarios/failover-loss.js';
import type { FanOutResult } from './scenarios/fan-out.js';
import { FOREIGN_SSE_PATHS, type ForeignSseResult } from './scenarios/foreign-sse.js';
import { HTTP_LATENCY_CONTENDERS, type HttpLatencyResult } from './scenarios/http-latency.js';
import type { IdleSseResult } from './scenarios/idle-sse.js';
import type { JobThroughputResult } from './scenarios/job-throughput.js';
import type { LockCostResult } from './scenarios/lock-cost.js';
import type { MemoryBackendResult } from './scenarios/memory-backend.js';
import type { RecoveryResult } from './scenarios/recovery.js';
import type { KernelMonitorUsage } from './support/kernel-monitor.js';
import type { PacedLatency, SingleJobResult } from './support/single-job-rounds.js';
import { median, round } from './support/stats.js';

export interface Machine {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  redis: string;
  os: string;
}

export interface BenchResults {
  startedAt: string;
  durationSec: number;
  machine: Machine;
  /** The kernel's DAMON monitor over the whole run, where it runs (see {@link KernelMonitorUsage}). */
  kernelMonitor?: KernelMonitorUsage;
  singleJob: SingleJobResult[];
  httpLatency: HttpLatencyResult;
  foreignSse: ForeignSseResult;
  cluster: ClusterResult;
  failoverLoss: FailoverLossResult;
  fanOut: FanOutResult[];
  jobThroughput: JobThroughputResult[];
  idleSse: IdleSseResult;
  memoryBackend: MemoryBackendResult;
  recovery: RecoveryResult;
  lockCost: LockCostResult;
  targets: Target[];
}

export interface Target {
  name: string;
  /** How the ratio is formed. */
  ratio: string;
  value: number;
  goal: string;
  met: boolean;
  /** When missed: by how much. */
  miss?: string;
}

function find<T extends { contender: string }>(list: T[], name: string): T {
  const item = list.find((entry) => entry.contender === name);
  if (!item) throw new Error(`no result for ${name}`);
  return item;
}

/** The issue's targets, as ratios within this run. */
export function evaluateTargets(results: Omit<BenchResults, 'targets'>): Target[] {
  const lib = find(results.singleJob, 'library');
  const pipelined = find(results.singleJob, 'raw-xadd-pipelined');
  const awaited = find(results.singleJob, 'raw-xadd-awaited');
  const queueEvents = find(results.singleJob, 'bullmq-queue-events');
  const bridge = find(results.singleJob, 'processor-bridge');
  const foreign = find(results.singleJob, 'foreign-bridge');
  const libFan = find(results.fanOut, 'library').points;
  const qeFan = find(results.fanOut, 'bullmq-queue-events').points;
  const perEvent = (points: FanOutResult['points'], k: number): number => points.find((p) => p.k === k)!.cpuUsPerEvent;
  const kMax = Math.max(...libFan.map((p) => p.k));
  const kMin = Math.min(...libFan.map((p) => p.k));
  const libJobs = find(results.jobThroughput, 'library');
  const bullJobs = find(results.jobThroughput, 'bullmq');
  const oneNode = find(results.cluster.contenders, CLUSTER_CONTENDERS.oneNode);
  const onCluster = find(results.cluster.contenders, CLUSTER_CONTENDERS.cluster);
  const httpLibrary = find(results.httpLatency.contenders, HTTP_LATENCY_CONTENDERS.library);
  const httpRaw = find(results.httpLatency.contenders, HTTP_LATENCY_CONTENDERS.raw);
  const ackedRuns = results.failoverLoss.cases.filter((entry) => entry.replicaAcks > 0).flatMap((entry) => entry.runs);
  const ackedLost = ackedRuns.reduce((sum, run) => sum + run.missing, 0);

  const atLeast = (name: string, ratio: string, value: number, goal: number): Target => ({
    name,
    ratio,
    value: round(value),
    goal: `>= ${goal}`,
    met: value >= goal,
    ...(value < goal ? { miss: `${round((1 - value / goal) * 100, 2)}% short (${round(value)} vs ${goal})` } : {}),
  });
  const atMost = (name: string, ratio: string, value: number, goal: number): Target => ({
    name,
    ratio,
    value: round(value),
    goal: `<= ${goal}`,
    met: value <= goal,
    ...(value > goal ? { miss: `${round((value / goal - 1) * 100, 2)}% over (${round(value)} vs ${goal})` } : {}),
  });

  const libGrowth = perEvent(libFan, kMax) / perEvent(libFan, kMin);
  const qeGrowth = perEvent(qeFan, kMax) / perEvent(qeFan, kMin);
  return [
    atLeast(
      'Single-job throughput vs pipelined raw XADD',
      'library events/s / raw pipelined XADD events/s',
      lib.throughput!.eventsPerSec / pipelined.throughput!.eventsPerSec,
      0.6,
    ),
    atLeast(
      'Single-job throughput vs BullMQ QueueEvents',
      'library events/s / updateProgress+QueueEvents events/s',
      lib.throughput!.eventsPerSec / queueEvents.throughput!.eventsPerSec,
      4,
    ),
    atMost(
      'p99 latency at 1000 events/s vs raw XADD/XREAD',
      'library p99 / raw awaited XADD + XREAD p99',
      lib.latency.p99Ms / awaited.latency.p99Ms,
      2,
    ),
    atMost(
      'p99 at 1000 events/s through one HTTP hop vs raw + HTTP hop (ms above)',
      'library p99 (worker, demo api NDJSON, fetch client) - raw awaited XADD + XREAD BLOCK relayed by node:http p99, in ms; no forced GC',
      httpLibrary.latency.p99Ms - httpRaw.latency.p99Ms,
      1,
    ),
    atMost(
      'Bridge: cost of a processor job.updateProgress vs BullMQ alone',
      'BullMQ updateProgress+QueueEvents updates/s / bridged updateProgress+follow updates/s',
      queueEvents.throughput!.eventsPerSec / bridge.throughput!.eventsPerSec,
      1.3,
    ),
    atMost(
      'Bridge: p99 latency at 1000 updates/s vs raw XADD/XREAD',
      'bridged updateProgress p99 / raw awaited XADD + XREAD p99',
      bridge.latency.p99Ms / awaited.latency.p99Ms,
      2,
    ),
    atLeast(
      'Foreign workers: throughput vs QueueEvents',
      'plain worker bridged and followed updates/s / same worker read by QueueEvents updates/s',
      foreign.throughput!.eventsPerSec / queueEvents.throughput!.eventsPerSec,
      1,
    ),
    atMost(
      'Foreign workers: p99 at 1000 updates/s, SSE on another api, above QueueEvents (ms)',
      "plain worker bridged by api A, SSE from api B, p99 - QueueEvents' p99 of the same updates, in ms; no forced GC",
      results.foreignSse.aboveQueueEventsMs.p99,
      2,
    ),
    atMost(`Fan-out CPU per delivered event, K=${kMax} vs K=${kMin}`, `library CPU/event at K=${kMax} / at K=${kMin}`, libGrowth, 1.5),
    {
      name: `QueueEvents CPU per delivered event grows with K`,
      ratio: `QueueEvents CPU/event at K=${kMax} / at K=${kMin}`,
      value: round(qeGrowth),
      goal: '> 1.5 (grows)',
      met: qeGrowth > 1.5,
    },
    atLeast(
      'Redis Cluster: throughput vs one node',
      'library events/s on a 3-master cluster / on one redis-server',
      onCluster.throughput!.eventsPerSec / oneNode.throughput!.eventsPerSec,
      0.5,
    ),
    atMost(
      "Redis Cluster: p99 at 1000 events/s minus one node's (ms)",
      'library p99 on a 3-master cluster - on one redis-server, in ms',
      onCluster.latency.p99Ms - oneNode.latency.p99Ms,
      2,
    ),
    {
      name: 'Failover with `replicaAcks: 1`: events lost',
      ratio: `emitted events missing from the job's stream after ${ackedRuns.length} failures of its master (SIGKILL and partition), summed`,
      value: ackedLost,
      goal: '= 0',
      met: ackedLost === 0,
      ...(ackedLost ? { miss: `${ackedLost} events lost` } : {}),
    },
    atLeast(
      'No-op job throughput vs plain BullMQ',
      'library jobs/s / BullMQ Queue+Worker jobs/s',
      libJobs.jobsPerSec / bullJobs.jobsPerSec,
      0.8,
    ),
    atMost(
      'New attempt within 15 s of a SIGKILL',
      `median of ${results.recovery.runsMs.length} kills of a worker running a job: from the SIGKILL to the job's next \`started\`, in s`,
      results.recovery.medianMs / 1000,
      15,
    ),
  ];
}

const fmt = (value: number, digits = 3): string => {
  if (!Number.isFinite(value)) return String(value);
  const rounded = round(value, digits);
  return Math.abs(rounded) >= 1000 ? Math.round(rounded).toLocaleString('en-US') : String(rounded);
};

/** p50, p99, pooled p99 and max cells of a table row, then whether every event came once, in order (here and in `alsoComplete`). */
function latencyCells(latency: PacedLatency, alsoComplete = true): string {
  return (
    `${fmt(latency.p50Ms)} | ${fmt(latency.p99Ms)} | ${fmt(latency.pooledP99Ms)} | ${fmt(latency.maxMs)} | ` +
    `${alsoComplete && latency.complete ? 'yes' : '**no**'}`
  );
}

/**
 * A table of single-job results: events/s (and their ratio to `reference`'s), p50, p99 (median
 * of the rounds'), pooled p99 and max at the paced rate, and whether every event came once, in order.
 */
function singleJobTable(entries: SingleJobResult[], reference: SingleJobResult, first: string, versus: string, cpuOf: string): string[] {
  const rows = entries.map((entry) => {
    const throughput = entry.throughput
      ? `${fmt(entry.throughput.eventsPerSec)} | ${fmt(entry.throughput.eventsPerSec / reference.throughput!.eventsPerSec, 2)}x | ${fmt(entry.throughput.cpuUsPerEvent)}`
      : '- | - | -';
    return `| ${entry.label} | ${throughput} | ${latencyCells(entry.latency, entry.throughput?.complete ?? true)} |`;
  });
  return [
    `| ${first} | events/s | ${versus} | CPU µs/event (${cpuOf}) | p50 ms | p99 ms | pooled p99 ms | max ms | every event once, in order |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
  ];
}

/** The foreign-worker SSE scenario: both paths over the same updates, and the SSE client's difference. */
function foreignSseLines(result: ForeignSseResult, signedMs: (ms: number) => string): string[] {
  const sse = result.paths.find((path) => path.path === FOREIGN_SSE_PATHS.sse)!;
  const queueEvents = result.paths.find((path) => path.path === FOREIGN_SSE_PATHS.queueEvents)!;
  const { aboveQueueEventsMs: above } = result;
  return [
    `**Foreign workers, SSE on another api**: a plain BullMQ worker's awaited \`job.updateProgress\` calls, bridged by demo api A ` +
      `(it holds the bridge lease), served as SSE by demo api B to a \`fetch\` client, and the same updates read by \`QueueEvents\` ` +
      `in a process of its own; no forced garbage collection. Throughput: median of ${result.bursts} bursts of ` +
      `${fmt(result.burstUpdates)} updates (updates/s from the first sent to the last received); latency at ${result.ratePerSec} ` +
      `updates/s over ${result.rounds} rounds of ${fmt(result.roundUpdates)}, the first ${result.warmupUpdates} of each not counted:`,
    '',
    '| path | updates/s | p50 ms | p99 ms | pooled p99 ms | max ms | every update once, in order |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...[sse, queueEvents].map(
      (path) => `| ${path.label} | ${fmt(path.throughput.updatesPerSec)} | ${latencyCells(path.latency, path.throughput.complete)} |`,
    ),
    '',
    `The SSE client against \`QueueEvents\` over the same updates: ${fmt(result.throughputRatio)}x its updates/s (median of the ` +
      `bursts' ratios), p50 ${signedMs(above.p50)} ms, p99 ${signedMs(above.p99)} ms (pooled ${signedMs(above.pooledP99)} ms), ` +
      `max ${signedMs(above.max)} ms; p99 as the median of the rounds' differences. Api A's bridge read ` +
      `${fmt(result.bridgeEntriesPerRead)} entries of BullMQ's events stream per read during the bursts (its \`/metrics\`).`,
  ];
}

/** What the kernel's DAMON monitor took during the run, as a sentence (empty where it does not run). */
function kernelMonitorNote(usage: KernelMonitorUsage | undefined): string {
  if (!usage) return '';
  const what = [
    usage.operations && `over \`${usage.operations}\``,
    usage.sampleMs !== undefined && `sampling every ${fmt(usage.sampleMs)} ms`,
  ]
    .filter(Boolean)
    .join(', ');
  return (
    ` The kernel's memory-access monitor (DAMON, \`kdamond\`${what ? `, ${what}` : ''}) took ${fmt(usage.cpuMsPerSec)} ms of CPU per second ` +
    'during the run: see "Where the targets are missed".'
  );
}

/** The README section's generated part: ratios first, then absolute numbers and the machine. */
export function markdown(results: BenchResults): string {
  const lines: string[] = [];
  const { machine } = results;
  lines.push(
    `Run of ${results.startedAt.slice(0, 10)} (\`npm run bench\`, ${Math.round(results.durationSec)} s), ` +
      `on ${machine.nproc} cores of ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, Redis ${machine.redis}, ${machine.os}.` +
      kernelMonitorNote(results.kernelMonitor),
    '',
    '**Targets** (ratios within the same run):',
    '',
    '| target | ratio | this run | goal | met |',
    '| --- | --- | ---: | --- | --- |',
  );
  for (const target of results.targets) {
    lines.push(
      `| ${target.name} | ${target.ratio} | ${fmt(target.value)} | ${target.goal} | ${target.met ? 'yes' : `**no**: ${target.miss}`} |`,
    );
  }

  lines.push(
    '',
    `**One job, producer and consumer in different processes**. Throughput: median of ${results.singleJob[0].throughput!.runs.length} bursts ` +
      `(events/s from the first emit to the last receipt). Latency from ready to emit to receipt at ${results.singleJob[0].latency.ratePerSec} events/s, ` +
      `${results.singleJob[0].latency.roundP99Ms.length} rounds (${results.singleJob[0].latency.events} events in all): p50 over all events, ` +
      `p99 as the median of the rounds' p99s (pooled p99 beside it):`,
    '',
    ...singleJobTable(results.singleJob, find(results.singleJob, 'library'), 'contender', 'vs library', 'all processes and Redis'),
  );

  const http = results.httpLatency;
  const signedMs = (ms: number): string => `${ms >= 0 ? '+' : ''}${fmt(ms)}`;
  lines.push(
    '',
    `**Latency through one HTTP hop, no forced garbage collection**: one job per round at ${http.ratePerSec} events/s, ` +
      `from ready to emit to the receipt of its NDJSON line by a \`fetch\` client in its own process; ` +
      `${http.rounds} rounds of ${http.eventsPerRound} events per contender, taking turns, the first ${http.warmupEvents} of each not counted:`,
    '',
    '| path | p50 ms | p99 ms | pooled p99 ms | max ms | every event once, in order |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    ...http.contenders.map((entry) => `| ${entry.label} | ${latencyCells(entry.latency)} |`),
    '',
    `The library above raw + HTTP hop: p50 ${signedMs(http.aboveRawMs.p50)} ms, p99 ${signedMs(http.aboveRawMs.p99)} ms ` +
      `(pooled ${signedMs(http.aboveRawMs.pooledP99)} ms), max ${signedMs(http.aboveRawMs.max)} ms.`,
  );

  lines.push('', ...foreignSseLines(results.foreignSse, signedMs));

  const { cluster } = results;
  const clusterRun = cluster.contenders[0];
  lines.push(
    '',
    `**Redis Cluster**: the same library contender on a local cluster of ${cluster.masters} masters with ` +
      `${cluster.replicasPerMaster} replica each (started by the bench), against the bench's one redis-server, ` +
      `round after round in this run: median of ${clusterRun.throughput!.runs.length} bursts of ${fmt(clusterRun.throughput!.events)} events, ` +
      `${clusterRun.latency.roundP99Ms.length} rounds at ${clusterRun.latency.ratePerSec} events/s (${clusterRun.latency.events} events in all); ` +
      `\`replicaAcks: 1\` adds a \`WAIT 1\` after each write of the job's events:`,
    '',
    ...singleJobTable(
      cluster.contenders,
      find(cluster.contenders, CLUSTER_CONTENDERS.oneNode),
      'setup',
      'vs one node',
      'producer and consumer',
    ),
  );
  const plain = find(cluster.contenders, CLUSTER_CONTENDERS.cluster);
  const acked = find(cluster.contenders, CLUSTER_CONTENDERS.clusterReplicaAcks);
  lines.push(
    '',
    `Cost of \`replicaAcks: 1\` on the cluster: ${fmt(acked.throughput!.eventsPerSec / plain.throughput!.eventsPerSec, 2)}x the events/s ` +
      `without it, p50 ${signedMs(acked.latency.p50Ms - plain.latency.p50Ms)} ms, p99 ${signedMs(acked.latency.p99Ms - plain.latency.p99Ms)} ms.`,
  );

  lines.push('', ...failoverLossLines(results.failoverLoss));

  const fanLib = find(results.fanOut, 'library');
  const fanQe = find(results.fanOut, 'bullmq-queue-events');
  lines.push(
    '',
    `**Fan-out**: K jobs each emitting ${fanLib.ratePerJob} events/s, one api process following one of them; ` +
      `CPU time of that process per event it delivers (µs):`,
    '',
    '| K | events/s in all | this library | QueueEvents dispatching by job id |',
    '| ---: | ---: | ---: | ---: |',
  );
  for (const point of fanLib.points) {
    const qe = fanQe.points.find((p) => p.k === point.k);
    lines.push(`| ${point.k} | ${fmt(point.totalEventsPerSec)} | ${fmt(point.cpuUsPerEvent)} | ${qe ? fmt(qe.cpuUsPerEvent) : '-'} |`);
  }

  lines.push(
    '',
    `**No-op jobs**, enqueued by one process and run by another (worker concurrency ${results.jobThroughput[0].concurrency}, ` +
      `median of ${results.jobThroughput[0].runs.length} runs of ${results.jobThroughput[0].jobs}):`,
    '',
    '| contender | jobs/s | vs plain BullMQ | enqueue alone /s | CPU µs per job: producer / worker / redis |',
    '| --- | ---: | ---: | ---: | --- |',
  );
  const bullJobs = find(results.jobThroughput, 'bullmq');
  for (const entry of results.jobThroughput) {
    lines.push(
      `| ${entry.label} | ${fmt(entry.jobsPerSec)} | ${fmt(entry.jobsPerSec / bullJobs.jobsPerSec)}x | ${fmt(entry.enqueuePerSec)} | ` +
        `${fmt(entry.cpuUsPerJob.producer)} / ${fmt(entry.cpuUsPerJob.worker)} / ${fmt(entry.cpuUsPerJob.redis)} |`,
    );
  }

  const sse = results.idleSse;
  lines.push(
    '',
    `**Idle SSE followers**: the demo api (api only) with ${sse.followers} SSE clients on ${sse.jobs} queued builds:`,
    '',
    '| Redis connections | live heap without → with followers | per follower | RSS without → with | per follower | CPU while idle | cancel → `cancelled` on its stream, p50 / max |',
    '| --- | --- | ---: | --- | ---: | ---: | --- |',
    `| ${sse.redisConnections.with} (${sse.redisConnections.before} with none) | ${fmt(sse.heapMiB.before)} → ${fmt(sse.heapMiB.with)} MiB | ` +
      `${fmt(sse.heapKiBPerFollower)} KiB | ${fmt(sse.rssMiB.before)} → ${fmt(sse.rssMiB.with)} MiB | ${fmt(sse.rssKiBPerFollower)} KiB | ` +
      `${sse.idleCpuMsPerSec === 0 ? '< 2' : fmt(sse.idleCpuMsPerSec)} ms/s | ${fmt(sse.wakeLatencyMs.p50)} / ${fmt(sse.wakeLatencyMs.max)} ms |`,
    '',
    `**Memory backend**: ${fmt(results.memoryBackend.eventsPerSec)} events/s from a handler to a follower in the same process ` +
      `(median of ${results.memoryBackend.runs.length} runs of ${results.memoryBackend.events}).`,
  );

  const { recovery, lockCost } = results;
  const seconds = (ms: number): string => fmt(ms / 1000);
  lines.push(
    '',
    `**Recovery after SIGKILL**: a worker running a job is killed, another worker (the library's defaults: lock ` +
      `${seconds(recovery.lockDurationMs)} s) starts the job again; from the kill to the new attempt's \`started\` event ` +
      `at a follower: median ${seconds(recovery.medianMs)} s, max ${seconds(recovery.maxMs)} s ` +
      `(each kill: ${recovery.runsMs.map(seconds).join(', ')} s).`,
    '',
    `**Redis cost of the lock**: ${lockCost.runningJobs} held jobs (no events, no progress) on ${lockCost.workers} worker processes; ` +
      `Redis with them running against the same workers with no job, in windows of whole lock renewal periods ` +
      `(a quarter of the lock). CPU in scripts is what \`INFO commandstats\` counts for the renewal and stalled-check scripts; ` +
      `the whole server's CPU also holds its own idle work, which varies from window to window:`,
    '',
    '| setting | commands/s: no job → running | script calls/s running | CPU in scripts ms/s | redis-server CPU ms/s: no job → running | per running job: commands/s | per running job: CPU µs/s in scripts / whole server |',
    '| --- | --- | ---: | ---: | --- | ---: | --- |',
  );
  for (const point of lockCost.points) {
    lines.push(
      `| ${point.label} | ${fmt(point.idle.commandsPerSec)} → ${fmt(point.running.commandsPerSec)} | ${fmt(point.running.scriptCallsPerSec)} | ` +
        `${fmt(point.running.scriptMsPerSec)} | ${fmt(point.idle.cpuMsPerSec)} → ${fmt(point.running.cpuMsPerSec)} | ` +
        `${fmt(point.perJob.commandsPerSec)} | ${fmt(point.perJob.scriptUsPerSec)} / ${fmt(point.perJob.cpuUsPerSec)} |`,
    );
  }
  return lines.join('\n');
}

/** The failover scenario's paragraph and table. */
function failoverLossLines(failover: FailoverLossResult): string[] {
  const runs = failover.cases[0].runs.length;
  // Counts exactly, without thousands separators (the runs are comma-separated).
  const each = (values: number[]): string => values.join(', ');
  const rows = failover.cases.map((entry) => {
    const intact = `${entry.intact} of ${entry.runs.length}`;
    const twice = Math.max(...entry.runs.map((run) => run.receivedTwice));
    return (
      `| ${entry.label} | ${each(entry.runs.map((run) => run.missing))} | ${entry.missing.median} / ${entry.missing.max} | ` +
      `${each(entry.runs.map((run) => run.seenThenLost))} | ${twice} | ${intact} | ` +
      `${fmt(median(entry.runs.map((run) => run.failoverSec)))} | ${fmt(median(entry.runs.map((run) => run.terminalSec)))} |`
    );
  });
  const cut = failover.cases.find((entry) => entry.fault === FAILOVER_FAULTS.partition && entry.replicaAcks === 0);
  return [
    `**Failover of a running job's master**: a local cluster of 3 masters with a replica each (\`cluster-node-timeout\` ` +
      `${fmt(failover.nodeTimeoutMs / 1000)} s), a \`@JobHandler\` emitting ${fmt(failover.eventsPerJob)} events at ` +
      `${fmt(failover.ratePerSec)} events/s, an api-only follower; after ${fmt(failover.faultAfterEvents)} events the master ` +
      `holding the job's keys is SIGKILLed (started again once its replica took over) or cut off from the other nodes while ` +
      `clients still reach it (healed once its replica took over). ${runs} runs per case, taking turns. Lost: emitted events ` +
      `missing from the job's stream once it ended:`,
    '',
    '| case | events lost, each run | median / max | seen by the follower, then lost | received twice, max | completed, every event once | failover s (median) | terminal event s after the fault (median) |',
    '| --- | --- | --- | --- | ---: | --- | ---: | ---: |',
    ...rows,
    ...(cut
      ? [
          '',
          `Without replica acks, a cut-off master's lost writes spanned ${fmt(cut.missing.median / failover.ratePerSec)} s ` +
            `of the job's events (median; most ${fmt(cut.missing.max / failover.ratePerSec)} s).`,
        ]
      : []),
  ];
}

export const README_START = '<!-- bench:start (written by npm run bench) -->';
export const README_END = '<!-- bench:end -->';

/** Replaces the generated part of the README's Benchmarks section (between the markers). */
export function updateReadme(readme: string, generated: string): string {
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`README.md has no "${README_START}" ... "${README_END}" markers to write the results between`);
  }
  return `${readme.slice(0, start + README_START.length)}\n\n${generated}\n\n${readme.slice(end)}`;
}
