import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { Redis } from 'ioredis';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, expectedBuildEvents, mapLimit, readLines, readSse, typesAndData, type WireEvent } from '../support/build-api.js';
import { NO_DELIVERY, addCounts, auditDelivery, readStoredEvents, type DeliveryCounts } from '../support/delivery-audit.js';
import { MiB, RssSampler, mib, processMemory } from '../support/process-memory.js';
import { redisConnectionsOf } from '../support/redis-clients.js';
import { blockedConnectionsOf } from '../support/redis-monitor.js';
import { RedisServer } from '../support/redis-server.js';
import { RedisKeys } from 'nestjs-job-streams';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** How much load: `builds` demo builds of `steps x (1 + tokensPerStep) + 2` events, followed by `clients` clients. */
export interface LoadProfile {
  name: string;
  builds: number;
  steps: number;
  tokensPerStep: number;
  stepMs: number;
  /** Clients in all, spread over the builds, both apis and the three deliveries (at least one per build). */
  clients: number;
  /** `WORKER_CONCURRENCY` of each of the two workers. */
  workerConcurrency: number;
  /**
   * The whole load is run this many times on the same processes: memory that a round leaves
   * behind (per event or per client) then shows as growth from round to round.
   */
  rounds: number;
  /**
   * The apis run with `--max-old-space-size` set to this (MiB), as in a memory-limited container:
   * they must serve the load within it, and V8 collects garbage before growing past it instead
   * of letting it pile up, so that their RSS shows what they keep (see {@link memoryBounds}).
   */
  apiOldSpaceMb: number;
  /** A client whose follow has not ended after this long counts as failed. */
  clientTimeoutMs: number;
  /** How long the apis' RSS may take to come back near the baseline once the clients left. */
  settleMs: number;
}

export const PROFILES: Record<'small' | 'big', LoadProfile> = {
  // CI (npm test): every build runs at once (32 slots), about 2 s of events a round; 3 rounds of 9,696 events delivered.
  small: {
    name: 'small',
    builds: 16,
    steps: 10,
    tokensPerStep: 19,
    stepMs: 150,
    clients: 48,
    workerConcurrency: 16,
    rounds: 3,
    apiOldSpaceMb: 64,
    clientTimeoutMs: 30_000,
    settleMs: 10_000,
  },
  // By flag: 200 builds of 1002 events in two waves over 100 slots, 600 clients; 3 rounds of 601,200 events delivered.
  big: {
    name: 'big',
    builds: 200,
    steps: 50,
    tokensPerStep: 19,
    stepMs: 100,
    clients: 600,
    workerConcurrency: 50,
    rounds: 3,
    apiOldSpaceMb: 64,
    clientTimeoutMs: 180_000,
    settleMs: 30_000,
  },
};

const OVERRIDES = [
  'builds',
  'steps',
  'tokensPerStep',
  'stepMs',
  'clients',
  'workerConcurrency',
  'rounds',
  'apiOldSpaceMb',
  'clientTimeoutMs',
  'settleMs',
] as const;

/**
 * The profile named by `LOAD_PROFILE` (default `small`), with numbers overridden by
 * `LOAD_BUILDS`, `LOAD_STEPS`, `LOAD_TOKENS_PER_STEP`, ... (the field name in upper snake case).
 */
export function profileFromEnv(env: NodeJS.ProcessEnv = process.env): LoadProfile {
  const name = env.LOAD_PROFILE || 'small';
  if (name !== 'small' && name !== 'big') throw new Error(`LOAD_PROFILE must be small or big (got ${JSON.stringify(name)})`);
  const profile: LoadProfile = { ...PROFILES[name] };
  for (const field of OVERRIDES) {
    const variable = `LOAD_${field.replace(/[A-Z]/g, (letter) => `_${letter}`).toUpperCase()}`;
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    if (!/^[0-9]+$/.test(raw)) throw new Error(`${variable} must be a non-negative integer (got ${JSON.stringify(raw)})`);
    profile[field] = Number(raw);
    profile.name = `${name}+overrides`;
  }
  if (profile.builds < 1 || profile.clients < profile.builds)
    throw new Error('the profile needs at least one build and one client per build');
  return profile;
}

const KINDS = ['polling', 'sse', 'ndjson'] as const;
type Kind = (typeof KINDS)[number];

/** What one client did. */
interface ClientRun {
  kind: Kind;
  api: string;
  build: number;
  events: WireEvent[];
  requests: number;
  /** Requests sent again after they got no answer at all (see {@link follow}). */
  retries: number;
  error?: string;
  startedAt: number;
  endedAt: number;
}

export interface ApiMemory {
  api: string;
  /** Median of a few samples after the warm-up, before any load. */
  beforeMiB: number;
  /** Highest sample (every 50 ms) during the first round. */
  firstRoundPeakMiB: number;
  /** Highest sample over all rounds. */
  peakMiB: number;
  /** The kernel's high-water mark of the RSS at the end of the run. */
  hwmMiB: number;
  /** RSS right after each round's clients left. */
  afterRoundMiB: number[];
  /** After the last round: the sample that met the bound, or the lowest one seen when none did. */
  afterMiB: number;
  /** The bound `after` is checked against: the baseline plus {@link memoryBounds}`.afterOverBaseline`. */
  allowedAfterMiB: number;
  /** The RSS after the last round minus the RSS after the first (see {@link memoryBounds}`.roundOverRound`). */
  growthOverRoundsMiB: number;
  /** Redis connections of the process by name, before the load and after it. */
  redisConnections: { before: Record<string, number>; after: Record<string, number> };
  /** Connections still blocked in Redis (a reader following some job) once the clients left; empty when idle. */
  blockedAfter: string[];
  ok: boolean;
}

export interface LoadReport {
  profile: LoadProfile;
  eventsPerBuild: number;
  /** Summed over all clients of all rounds. */
  events: DeliveryCounts;
  byDelivery: Record<Kind, DeliveryCounts & { clients: number; requests: number; retries: number }>;
  /** Builds whose stored stream is exactly the demo build's expected events. */
  buildsAsExpected: number;
  clientErrors: string[];
  /** Per round, from the first client's start to the last client's end. */
  roundDurationsMs: number[];
  /** Distinct events delivered per second, over all clients (total delivered / total round time). */
  eventsPerSecond: number;
  memory: ApiMemory[];
  failures: string[];
  passed: boolean;
}

/**
 * What the apis' RSS is checked against once the clients left.
 *
 * - `afterOverBaseline`: the RSS after the last round may exceed the baseline by 32 MiB. An idle
 *   Node process keeps the garbage of its last moments (V8 collects only while allocating, and
 *   nothing is triggered from outside): its young generation (semi-spaces of up to 16 MiB) and
 *   old space below its next collection. With the 64 MiB old-space budget that was +10..23 MiB
 *   in the measured runs. Without a budget the RSS sat anywhere up to the peak (+90 MiB, big
 *   profile) for minutes while a heap snapshot held 24 MiB of live objects: hence the budget.
 * - `roundOverRound`: every round runs the same load, so a healthy api ends each at about the
 *   same RSS (measured: within 4 MiB); memory kept per client or per event adds up round over
 *   round, so the last round may end at most 10 MiB above the first.
 *
 * What this catches: memory kept per event (tried: keeping every chunk written made both apis
 * run out of their 64 MiB budget in round 2 of the big profile; the runner names the crash), per
 * round, or still growing after the clients left. What it cannot see: a few KiB kept per client,
 * or per-event leaks at the small profile's volume (about 15k events per api). The Redis-side
 * checks (same connections, no reader left blocked) are exact for the reader, which is what a
 * vanished client leaks (tried: not closing subscriptions fails them in the small profile).
 */
export const memoryBounds = { afterOverBaseline: 32 * MiB, roundOverRound: 10 * MiB } as const;

/**
 * Follows a job from its first event to its last, recording every event as received (anomalies
 * are counted later, not thrown).
 *
 * A request that gets no answer at all (`fetch` rejects: the connection failed before a
 * response) is sent once more, as a real client would: with HTTP keep-alive a request can go
 * out on a pooled connection just as the server closes it for idleness. (Seen once: in one of
 * seven big-profile runs, four polling requests failed with "fetch failed" while other work
 * loaded the machine; that race is the likely cause.) Retries are counted in the report; a
 * stream that breaks after its answer is not retried, and a second failure is a client error.
 */
async function follow(api: BuildApi, jobId: string, kind: Kind, build: number, timeoutMs: number): Promise<ClientRun> {
  const run: ClientRun = { kind, api: api.label, build, events: [], requests: 0, retries: 0, startedAt: Date.now(), endedAt: 0 };
  const signal = AbortSignal.timeout(timeoutMs);
  const answered = async <T>(request: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (error) {
        // fetch's own failure is a TypeError; a non-200 answer or a bad body is not retried.
        if (attempt > 1 || signal.aborted || !(error instanceof TypeError)) throw error;
        run.retries++;
      }
    }
  };
  try {
    if (kind === 'polling') {
      let after: string | undefined;
      for (;;) {
        const page = await answered(() => api.poll(jobId, { after, waitMs: 5000 }, signal));
        run.requests++;
        for (const event of page.events) run.events.push({ id: event.id, type: event.type, data: event.data });
        if (page.done) break;
        after = page.next;
      }
    } else {
      const accept = kind === 'sse' ? 'text/event-stream' : 'application/x-ndjson';
      const response = await answered(() =>
        api.fetch(`/builds/${encodeURIComponent(jobId)}/events`, { headers: { Accept: accept }, signal }),
      );
      run.requests++;
      if (response.status !== 200) throw new Error(`answered ${response.status} ${await response.text()}`);
      if (kind === 'sse') {
        for await (const event of readSse(response)) run.events.push(event);
      } else {
        for await (const line of readLines(response)) {
          const event = JSON.parse(line) as WireEvent;
          run.events.push({ id: event.id, type: event.type, data: event.data });
        }
      }
    }
  } catch (error) {
    const cause = (error as Error).cause as Error | undefined;
    const message = `${(error as Error).message}${cause ? ` (${cause.message ?? String(cause)})` : ''}`;
    run.error =
      `${kind} client of build ${build} on ${api.label} after ${run.events.length} events, ${run.requests} requests: ` +
      (signal.aborted ? `not done after ${timeoutMs} ms` : message);
  }
  run.endedAt = Date.now();
  return run;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** What a round of load left to check. */
interface Round {
  jobIds: string[];
  runs: ClientRun[];
  durationMs: number;
  peaks: Map<number, number>;
}

/**
 * One round: `builds` builds started over both apis, each followed from its first event by its
 * share of the clients (polling, SSE and NDJSON, on both apis), while the apis' RSS is sampled.
 */
async function runRound(profile: LoadProfile, apis: BuildApi[], pids: number[]): Promise<Round> {
  const sampler = new RssSampler(pids, 50);
  const jobIds: string[] = new Array<string>(profile.builds);
  const clientRuns: Array<Promise<ClientRun>> = [];
  const firstStart = Date.now();
  try {
    await mapLimit(
      Array.from({ length: profile.builds }, (_, build) => build),
      20,
      async (build) => {
        jobIds[build] = await apis[build % 2].start({ steps: profile.steps, stepMs: profile.stepMs, tokensPerStep: profile.tokensPerStep });
        // Client c follows build c % builds; its round r = floor(c / builds) picks the delivery, and
        // the api alternates with both, so every build is read on both apis and in every delivery.
        for (let client = build; client < profile.clients; client += profile.builds) {
          const round = Math.floor(client / profile.builds);
          const api = apis[(build + round) % 2];
          clientRuns.push(follow(api, jobIds[build], KINDS[round % KINDS.length], build, profile.clientTimeoutMs));
        }
      },
    );
  } finally {
    // Even when a start failed: no client is left running past the round (each ends by its timeout at the latest).
    await Promise.all(clientRuns);
    sampler.stop();
  }
  const runs = await Promise.all(clientRuns);
  const durationMs = Math.max(...runs.map((run) => run.endedAt)) - firstStart;
  return { jobIds, runs, durationMs, peaks: sampler.peak };
}

/**
 * Runs the load test: Redis, two apis (no handlers) and two workers as separate processes; a
 * warm-up; `rounds` rounds of load; then every client's events are compared with the job's
 * stream as stored in Redis, and the apis' memory and Redis connections are checked once the
 * clients left.
 */
export async function runLoad(profile: LoadProfile, log: (line: string) => void = () => undefined): Promise<LoadReport> {
  const redis = await RedisServer.start();
  const processes: AppProcess[] = [];
  let commands: Redis | undefined;
  try {
    const prefix = `load-${randomUUID().slice(0, 8)}`;
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: redis.url,
      JOB_QUEUE_PREFIX: prefix,
      WORKER_CONCURRENCY: String(profile.workerConcurrency),
    };
    const apiEnv = { ...env, JOB_QUEUE_WORKER: 'false', NODE_OPTIONS: `--max-old-space-size=${profile.apiOldSpaceMb}` };
    const [apiA, apiB] = await AppProcess.startAll(processes, [
      AppProcess.api(apiEnv),
      AppProcess.api(apiEnv),
      AppProcess.worker(env),
      AppProcess.worker(env),
    ]);
    const apiProcesses = [apiA, apiB];
    const pids = apiProcesses.map((process) => process.pid);
    const apis = [new BuildApi(apiProcesses[0].url, 'api A'), new BuildApi(apiProcesses[1].url, 'api B')];
    commands = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await commands.connect();

    // Warm-up, so that the baseline is an api that has served every kind of request (code loaded
    // and compiled, pools and buffers allocated), not a freshly started one.
    const warmUpId = await apis[0].start({ steps: 3, stepMs: 10, tokensPerStep: 3 });
    const warmUp = await Promise.all(apis.flatMap((api) => KINDS.map((kind) => follow(api, warmUpId, kind, -1, 20_000))));
    const warmUpError = warmUp.find((run) => run.error);
    if (warmUpError) throw new Error(`warm-up: ${warmUpError.error}`);
    const connectionsBefore = await Promise.all(pids.map((pid) => redisConnectionsOf(commands!, pid)));
    const baselineSamples: number[][] = pids.map(() => []);
    for (let sample = 0; sample < 5; sample++) {
      if (sample) await delay(100); // spaced samples of a quiet process: there is no event to await
      pids.forEach((pid, i) => baselineSamples[i].push(processMemory(pid).rss));
    }
    const before = baselineSamples.map(median);

    const eventsPerBuild = expectedBuildEvents(profile.steps, profile.tokensPerStep).length;
    log(
      `load profile ${profile.name}: ${profile.rounds} rounds of ${profile.builds} builds x ${eventsPerBuild} events, ` +
        `${profile.clients} clients, 2 apis, 2 workers x ${profile.workerConcurrency}`,
    );
    const rounds: Round[] = [];
    const afterRound: number[][] = pids.map(() => []);
    // A process that died (e.g. an api out of its heap budget) is named, with its last words.
    const deaths = (): string =>
      processes
        .map((process, i) => ({ process, name: ['api A', 'api B', 'worker 1', 'worker 2'][i] }))
        .filter(({ process }) => process.child.exitCode !== null || process.child.signalCode !== null)
        .map(
          ({ process, name }) =>
            `${name} exited (${process.child.exitCode ?? process.child.signalCode}): ${/FATAL ERROR[^\n]*/.exec(process.output)?.[0] ?? process.output.slice(-600)}`,
        )
        .join('\n');
    for (let round = 0; round < profile.rounds; round++) {
      try {
        rounds.push(await runRound(profile, apis, pids));
        pids.forEach((pid, i) => afterRound[i].push(processMemory(pid).rss));
      } catch (error) {
        const died = deaths();
        throw died ? new Error(`round ${round + 1} failed (${(error as Error).message}):\n${died}`, { cause: error }) : error;
      }
      log(`round ${round + 1}: clients done in ${rounds[round].durationMs} ms`);
    }

    // Every client against the stream stored in Redis; every stored stream against the demo build.
    const expected = expectedBuildEvents(profile.steps, profile.tokensPerStep);
    let buildsAsExpected = 0;
    let events = NO_DELIVERY;
    const byDelivery = Object.fromEntries(
      KINDS.map((kind) => [kind, { ...NO_DELIVERY, clients: 0, requests: 0, retries: 0 }]),
    ) as LoadReport['byDelivery'];
    for (const round of rounds) {
      const stored = await mapLimit(round.jobIds, 10, (id) => readStoredEvents(commands!, new RedisKeys(prefix).events('jobs', id)));
      buildsAsExpected += stored.filter((storedEvents) => isDeepStrictEqual(typesAndData(storedEvents), expected)).length;
      for (const run of round.runs) {
        const counts = auditDelivery(stored[run.build], run.events);
        events = addCounts(events, counts);
        const entry = byDelivery[run.kind];
        Object.assign(entry, addCounts(entry, counts));
        entry.clients++;
        entry.requests += run.requests;
        entry.retries += run.retries;
      }
    }
    const clientErrors = rounds.flatMap((round) => round.runs.filter((run) => run.error).map((run) => run.error!));

    // Memory once every client left: sampled until within bound or `settleMs` passed.
    const firstPeak = pids.map((pid) => rounds[0].peaks.get(pid) ?? 0);
    const peak = pids.map((pid) => Math.max(...rounds.map((round) => round.peaks.get(pid) ?? 0)));
    const allowed = before.map((rss) => rss + memoryBounds.afterOverBaseline);
    const lowest = pids.map(() => Infinity);
    const settleDeadline = Date.now() + profile.settleMs;
    for (;;) {
      pids.forEach((pid, i) => (lowest[i] = Math.min(lowest[i], processMemory(pid).rss)));
      if (lowest.every((rss, i) => rss <= allowed[i]) || Date.now() >= settleDeadline) break;
      await delay(250); // the RSS has no event to await: sample it a few times a second
    }
    // The shared reader of each api gives up its blocking read once no job is followed (within
    // its block timeout of 5 s); its connections are the ones it had before the load. The
    // foreign-worker bridge's connection (`<prefix>:bridge`) stays blocked by design in whichever
    // process holds the bridge lease (an api or a worker, whoever took it first): it follows
    // BullMQ's events stream, not the clients' jobs.
    const blockedAfter: string[][] = [];
    const readerDeadline = Date.now() + 10_000;
    const blockedReaders = async (pid: number): Promise<string[]> =>
      (await blockedConnectionsOf(commands!, pid)).filter((name) => !name.endsWith(':bridge'));
    for (;;) {
      blockedAfter.splice(0, blockedAfter.length, ...(await Promise.all(pids.map(blockedReaders))));
      if (blockedAfter.every((names) => names.length === 0) || Date.now() >= readerDeadline) break;
      await delay(100); // a Redis-side state with no notification: polled, bounded by the deadline
    }
    const connectionsAfter = await Promise.all(pids.map((pid) => redisConnectionsOf(commands!, pid)));
    const memory: ApiMemory[] = apiProcesses.map((process, i) => ({
      api: apis[i].label,
      beforeMiB: mib(before[i]),
      firstRoundPeakMiB: mib(firstPeak[i]),
      peakMiB: mib(peak[i]),
      hwmMiB: mib(processMemory(process.pid).hwm),
      afterRoundMiB: afterRound[i].map(mib),
      afterMiB: mib(lowest[i]),
      allowedAfterMiB: mib(allowed[i]),
      growthOverRoundsMiB: mib(afterRound[i].at(-1)! - afterRound[i][0]),
      redisConnections: { before: connectionsBefore[i], after: connectionsAfter[i] },
      blockedAfter: blockedAfter[i],
      ok: lowest[i] <= allowed[i] && afterRound[i].at(-1)! - afterRound[i][0] <= memoryBounds.roundOverRound,
    }));

    const failures: string[] = [];
    if (events.lost) failures.push(`${events.lost} events lost`);
    if (events.duplicated) failures.push(`${events.duplicated} events duplicated`);
    if (events.outOfOrder) failures.push(`${events.outOfOrder} events out of order`);
    if (events.corrupted) failures.push(`${events.corrupted} events corrupted (unknown id, or type/data differ from the stored event)`);
    if (deaths()) failures.push(`a process died: ${deaths()}`);
    const builds = profile.builds * profile.rounds;
    if (buildsAsExpected !== builds) failures.push(`${builds - buildsAsExpected} builds stored other events than expected`);
    if (clientErrors.length) failures.push(`${clientErrors.length} clients failed, e.g. ${clientErrors[0]}`);
    for (const entry of memory) {
      if (entry.afterMiB > entry.allowedAfterMiB) {
        failures.push(`${entry.api}: RSS ${entry.afterMiB} MiB after the clients left, over ${entry.allowedAfterMiB} MiB`);
      }
      if (entry.growthOverRoundsMiB > mib(memoryBounds.roundOverRound)) {
        failures.push(`${entry.api}: RSS grew ${entry.growthOverRoundsMiB} MiB from the first round's end to the last's`);
      }
      if (!isDeepStrictEqual(entry.redisConnections.before, entry.redisConnections.after)) {
        failures.push(`${entry.api}: Redis connections ${JSON.stringify(entry.redisConnections)}`);
      }
      if (entry.blockedAfter.length)
        failures.push(`${entry.api}: still blocked in Redis after the clients left: ${entry.blockedAfter.join(', ')}`);
    }
    const roundDurationsMs = rounds.map((round) => round.durationMs);
    const totalMs = roundDurationsMs.reduce((sum, ms) => sum + ms, 0);
    return {
      profile,
      eventsPerBuild,
      events,
      byDelivery,
      buildsAsExpected,
      clientErrors: clientErrors.slice(0, 20),
      roundDurationsMs,
      eventsPerSecond: Math.round(events.delivered / (totalMs / 1000)),
      memory,
      failures,
      passed: failures.length === 0,
    };
  } finally {
    commands?.disconnect();
    await Promise.all(processes.map((process) => process.stop('SIGTERM', 5000)));
    await redis.destroy();
  }
}

/** The report as a human reads it. */
export function formatReport(report: LoadReport): string {
  const { profile, events } = report;
  const pad = (value: unknown, width = 12): string => String(value).padStart(width);
  const lines = [
    `Load test, profile ${profile.name}: ${profile.rounds} rounds of ${profile.builds} builds x ${report.eventsPerBuild} events ` +
      `(${profile.steps} steps x ${profile.tokensPerStep} tokens, ${profile.stepMs} ms/step) followed by ` +
      `${profile.clients} clients over 2 apis (old space ${profile.apiOldSpaceMb} MiB); 2 workers x ${profile.workerConcurrency}`,
    `  events expected ${pad(events.expected)}`,
    `  delivered       ${pad(events.delivered)}`,
    `  lost            ${pad(events.lost)}`,
    `  duplicated      ${pad(events.duplicated)}`,
    `  out of order    ${pad(events.outOfOrder)}`,
    `  corrupted       ${pad(events.corrupted)}`,
    `  builds as expected ${report.buildsAsExpected}/${profile.builds * profile.rounds}, client errors ${report.clientErrors.length}`,
    ...KINDS.map((kind) => {
      const entry = report.byDelivery[kind];
      return `  ${kind.padEnd(8)} ${pad(entry.clients, 5)} clients ${pad(entry.delivered, 9)} delivered ${pad(entry.requests, 7)} requests ${pad(entry.retries, 3)} retried`;
    }),
    `  rounds ${report.roundDurationsMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')}; ` +
      `throughput ${report.eventsPerSecond} events/s delivered`,
    `  memory (RSS, MiB)  before  peak 1st round  peak  HWM   after each round    after  allowed  growth over rounds`,
    ...report.memory.map(
      (entry) =>
        `  ${entry.api.padEnd(16)} ${pad(entry.beforeMiB, 7)} ${pad(entry.firstRoundPeakMiB, 15)} ${pad(entry.peakMiB, 5)} ` +
        `${pad(entry.hwmMiB, 5)}   ${entry.afterRoundMiB.join(' / ').padEnd(17)} ${pad(entry.afterMiB, 6)} ${pad(entry.allowedAfterMiB, 8)} ` +
        `${pad(entry.growthOverRoundsMiB, 19)}` +
        (entry.ok ? '' : '  OVER'),
    ),
    ...report.memory.map(
      (entry) =>
        `  ${entry.api} Redis connections before ${JSON.stringify(entry.redisConnections.before)}, after ` +
        `${JSON.stringify(entry.redisConnections.after)}; blocked after the clients left: ${entry.blockedAfter.join(', ') || 'none'}`,
    ),
    report.passed ? '  PASSED' : `  FAILED: ${report.failures.join('; ')}`,
  ];
  return lines.join('\n');
}

/** Writes the report as JSON to `.test-tmp/load-report-<profile>.json`; returns the path. */
export function writeReport(report: LoadReport): string {
  const dir = resolve(ROOT, '.test-tmp');
  mkdirSync(dir, { recursive: true });
  const path = resolve(dir, `load-report-${report.profile.name}.json`);
  writeFileSync(path, `${JSON.stringify({ ...report, finishedAt: new Date().toISOString() }, null, 2)}\n`);
  return path;
}
