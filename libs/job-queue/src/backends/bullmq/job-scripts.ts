import { readFileSync } from 'node:fs';
import type { RedisClient } from './redis-connection.js';
import type { JobQueueMeter } from '../../metrics/job-queue-meter.js';
import { attemptsOf } from './bull-job-attempts.js';
import { RedisKeys } from './redis-keys.js';
import type { ReplicaAcks } from './replica-acks.js';
import { traceIdOf, type TraceCarrier } from '../../tracing/job-tracing.js';

const SCRIPT_NAMES = [
  'withdraw-job',
  'start-attempt',
  'append-events',
  'finish-job',
  'requeue-job',
  'read-events',
  'read-job',
  'ensure-job',
  'bridge-entry',
  'bridge-progress',
  'bridge-lease',
  'bridge-position',
  'touch-read',
  'abandon-unread',
  'breaker-admit',
  'breaker-record',
  'breaker-read',
  'hold-job',
] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];

const KEY_COUNTS: Record<ScriptName, number> = {
  'withdraw-job': 1,
  'start-attempt': 2,
  'append-events': 2,
  'finish-job': 3,
  'requeue-job': 1,
  'read-events': 2,
  'read-job': 1,
  'ensure-job': 1,
  'bridge-entry': 3,
  'bridge-progress': 2,
  'bridge-lease': 1,
  'bridge-position': 2,
  'touch-read': 1,
  'abandon-unread': 3,
  'breaker-admit': 1,
  'breaker-record': 2,
  'breaker-read': 2,
  'hold-job': 1,
};

/** The scripts whose writes must survive a failover when replica acks are asked for: a job's events, and an accepted job. */
const DURABLE_WRITES: ReadonlySet<ScriptName> = new Set([
  'start-attempt',
  'append-events',
  'finish-job',
  'bridge-entry',
  'bridge-progress',
  'abandon-unread',
]);

const sources = new Map<string, string>();

/** A script file's text, as it is in `scripts/`. */
function scriptFile(name: string): string {
  return readFileSync(new URL(`./scripts/${name}.lua`, import.meta.url), 'utf8');
}

/**
 * The Lua of a script of `scripts/`, with each `--- @include "<file>"` line replaced by that file
 * of `scripts/` (a function several scripts share, or a whole script wrapped as one, written once).
 */
export function scriptSource(name: string): string {
  let lua = sources.get(name);
  if (lua === undefined) {
    // Included files are resolved in turn: a wrapped script may include one that includes others.
    lua = scriptFile(name).replace(/^--- @include "([a-z-]+)"$/gm, (_line, file: string) => scriptSource(file));
    sources.set(name, lua);
  }
  return lua;
}

/** The keys and arguments of one `finish-job` call (see `scripts/finish-job.lua`). */
export function finishJobCall(
  meta: string,
  events: string,
  state: 'completed' | 'failed' | 'cancelled',
  data: string,
  now: number,
  retentionMs: number,
  outcome: { field: 'result' | 'error'; value: string } | undefined,
  attempt: number | undefined,
): { keys: [string, string, string]; args: Array<string | number> } {
  return {
    keys: [meta, events, RedisKeys.spareOfEvents(events)],
    args: [state, data, now, retentionMs, outcome?.field ?? '', outcome?.value ?? '', attempt ?? ''],
  };
}

/** A script's reply as ioredis returns it. */
export type ScriptReply = Array<string | number>;

/** What `append-events` (alone, or inside a composed BullMQ command) replied. */
export function decodeAppendEvents(reply: ScriptReply): AppendEventsReply {
  const status = reply[0] as AppendEventsReply['status'];
  if (status === 'ok' || status === 'limit') return { status, appended: Number(reply[1]), lastId: String(reply[2]) };
  return { status };
}

/** What `start-attempt` decided. */
export type StartAttemptReply =
  /** `abandonAfterMs`: the job's, when it was enqueued with one. */
  /** `trace`: the trace context the job was enqueued in, when it was. */
  | { status: 'ok'; attempt: number; eventId: string; eventCount: number; abandonAfterMs?: number; trace?: TraceCarrier }
  | { status: 'final'; state: string; result: string | undefined }
  | { status: 'gone' }
  | { status: 'limit' };

/** Metadata for a job that has none yet (a processor job added with plain BullMQ). */
export interface NewJobMeta {
  name: string;
  maxAttempts: number;
  createdAt: number;
}

/** What `append-events` did with a batch. */
/** Why a job's stream stopped taking an attempt's events: it ended, a newer attempt took over, or it is full. */
export type AppenderStop = 'final' | 'stale' | 'limit';

export type AppendEventsReply =
  /** `appended` events went in (`limit`: fewer than the batch, the cap is reached); `lastId` is the last one's id. */
  | { status: 'ok' | 'limit'; appended: number; lastId: string }
  /** An earlier try of this batch got in before its reply was lost. */
  | { status: 'dup' }
  /** The job has its terminal event, or a newer attempt took over: nothing appended. */
  | { status: 'final' | 'stale' };

/** What `finish-job` did. */
export type FinishJobReply =
  /** `attempt`: the attempts started before this call (0: no worker had started the job). */
  | { status: 'ok'; eventId: string; attempt: number }
  /** The job was in final state `state` already: nothing changed. */
  | { status: 'final'; state: string }
  /** A newer attempt owns the job, or the job is unknown: nothing changed. */
  | { status: 'stale' | 'gone' };

/** One entry of BullMQ's queue events stream, as the foreign-worker bridge applies it to a job. */
export type BridgeEntry =
  | { kind: 'start'; activeMs: number }
  | { kind: 'event'; type: string; data: string }
  | { kind: 'terminal'; state: 'completed' | 'failed'; data: string; field: 'result' | 'error'; value: string }
  | { kind: 'requeue' }
  | { kind: 'gap'; data: string };

/** What `bridge-entry` did; `module` when the attempt is the module's own worker's to write. */
export type BridgeEntryReply = 'ok' | 'dup' | 'module' | 'final' | 'gone' | 'full';

/** A stream entry as Redis returns it. */
export type RawStreamEntry = [id: string, fields: string[]];

/** What `read-events` found: the page, or why there is none. */
export type ReadEventsReply =
  | { status: 'gone' }
  | { status: 'cursor' }
  /** `abandonAfterMs`: the job's, when it was enqueued with one (the read was recorded). */
  /** `traceId`: of the trace context the job was enqueued in, when it was. */
  | { status: 'ok'; terminal: string | undefined; entries: RawStreamEntry[]; abandonAfterMs?: number; traceId?: string };

/** What `breaker-admit` decided. */
export type BreakerAdmitReply = { status: 'pass' | 'probe' } | { status: 'wait'; retryAt: number; openUntil?: number };

/** A breaker's shared state, as `breaker-record` leaves it or `breaker-read` finds it. */
export interface BreakerStateReply {
  state: 'closed' | 'open' | 'half-open';
  recentFailures: number;
  openUntil?: number;
  /** The probe's holder (`breaker-read` only). */
  probe?: string;
}

/** `'1', owner` checks the owner; `'0', ''` is system access. */
function ownerArgs(owner: string | undefined): [string, string] {
  return owner === undefined ? ['0', ''] : ['1', owner];
}

/** The Lua scripts of the backend, one per command (see `scripts/*.lua` for KEYS and ARGV). */
export class JobScripts {
  /** `meter` is told of every event these scripts write to a job's stream. */
  /**
   * `replicaAcks`: when set, a script that writes a job's events (or confirms a job) resolves only
   * once that many replicas have its writes (see {@link ReplicaAcks}).
   */
  constructor(
    private readonly redis: RedisClient,
    private readonly meter?: JobQueueMeter,
    private readonly replicaAcks?: ReplicaAcks,
  ) {
    for (const name of SCRIPT_NAMES) redis.defineCommand(`jq:${name}`, { numberOfKeys: KEY_COUNTS[name], lua: scriptSource(name) });
  }

  private async run<T>(name: ScriptName, keys: string[], args: Array<string | number>): Promise<T> {
    const command = (this.redis as unknown as Record<string, (...a: Array<string | number>) => Promise<T>>)[`jq:${name}`];
    const reply = await command.call(this.redis, ...keys, ...args);
    if (this.replicaAcks && DURABLE_WRITES.has(name)) await this.replicaAcks.after(keys[0]);
    return reply;
  }

  /** True when a write counts as done only once replicas have it (`redis.replicaAcks`). */
  get waitsForReplicas(): boolean {
    return this.replicaAcks !== undefined;
  }

  /**
   * Resolves once replicas have a write of `key` that another connection made (the module's part
   * of a BullMQ command composed with it; see `ReplicaAcks.afterWriteElsewhere`), at once without
   * replica acks; rejects as a durable write here does when they do not confirm it.
   */
  confirmWriteElsewhere(key: string): Promise<void> {
    return this.replicaAcks ? this.replicaAcks.afterWriteElsewhere(key) : Promise.resolve();
  }

  /** Removes the metadata of a job whose enqueue failed, unless a worker started the job meanwhile. */
  withdrawJob(meta: string): Promise<'withdrawn' | 'started' | 'gone'> {
    return this.run('withdraw-job', [meta], []);
  }

  async startAttempt(
    meta: string,
    events: string,
    now: number,
    maxEvents: number,
    runId: string,
    create?: NewJobMeta,
  ): Promise<StartAttemptReply> {
    const reply = await this.run<ScriptReply>(
      'start-attempt',
      [meta, events],
      [now, maxEvents, runId, create ? '1' : '0', create?.name ?? '', create?.maxAttempts ?? 1, create?.createdAt ?? now],
    );
    return this.startAttemptReply(events, reply);
  }

  /**
   * Decodes what `start-attempt` (alone, or inside BullMQ's move of the job to active) replied for
   * the stream `events`, and tells the meter of the `started` it appended.
   */
  startAttemptReply(events: string, reply: ScriptReply): StartAttemptReply {
    switch (reply[0]) {
      case 'ok':
        this.meter?.sink?.appended(RedisKeys.queueOfJobKey(events), 1);
        return {
          status: 'ok',
          attempt: Number(reply[1]),
          eventId: String(reply[2]),
          eventCount: Number(reply[3]),
          abandonAfterMs: Number(reply[4]) || undefined,
          trace: reply[5] ? { traceparent: String(reply[5]), ...(reply[6] ? { tracestate: String(reply[6]) } : {}) } : undefined,
        };
      case 'final':
        return { status: 'final', state: String(reply[1]), result: reply[2] === '' ? undefined : String(reply[2]) };
      default:
        return { status: reply[0] as 'gone' | 'limit' };
    }
  }

  /**
   * Gives a job BullMQ has (its hash `bullJob`) metadata of its own when it has none; false when
   * BullMQ has no such job, or finished it (a finished job whose stream expired has nothing to follow).
   */
  async ensureJob(meta: string, bullJob: string, now: number): Promise<boolean> {
    let fields: Array<string | null>;
    try {
      fields = await this.redis.hmget(bullJob, 'name', 'opts', 'timestamp', 'finishedOn');
    } catch (error) {
      // Ids such as 'wait' or 'events' name BullMQ's own lists and streams, not jobs.
      if (/WRONGTYPE/.test((error as Error).message)) return false;
      throw error;
    }
    const [name, opts, timestamp, finishedOn] = fields;
    // A job's hash has its add's timestamp (a job scheduler's hash, `<queue>:repeat:<id>`, has none).
    if (name === null || timestamp === null || finishedOn !== null) return false;
    const job = { name, maxAttempts: attemptsOf(opts), createdAt: Number(timestamp) || now };
    return (await this.run<number>('ensure-job', [meta], [job.name, job.maxAttempts, job.createdAt])) === 1;
  }

  async appendEvents(
    meta: string,
    events: string,
    writer: string,
    seq: number,
    maxEvents: number,
    attempt: number,
    pairs: string[],
  ): Promise<AppendEventsReply> {
    const reply = await this.run<ScriptReply>('append-events', [meta, events], [writer, seq, maxEvents, attempt, ...pairs]);
    return this.appendEventsReply(events, reply);
  }

  /**
   * Decodes what `append-events` (alone, or inside a composed BullMQ command) replied for the
   * stream `events`, and tells the meter of the events it appended.
   */
  appendEventsReply(events: string, reply: ScriptReply): AppendEventsReply {
    const decoded = decodeAppendEvents(reply);
    if ('appended' in decoded && decoded.appended > 0) this.meter?.sink?.appended(RedisKeys.queueOfJobKey(events), decoded.appended);
    return decoded;
  }

  async finishJob(
    meta: string,
    events: string,
    state: 'completed' | 'failed' | 'cancelled',
    data: string,
    now: number,
    retentionMs: number,
    outcome: { field: 'result' | 'error'; value: string } | undefined,
    attempt: number | undefined,
  ): Promise<FinishJobReply> {
    const call = finishJobCall(meta, events, state, data, now, retentionMs, outcome, attempt);
    return this.finishJobReply(events, state, await this.run<ScriptReply>('finish-job', call.keys, call.args));
  }

  /**
   * Decodes what `finish-job` (alone, or inside BullMQ's move to finished) replied for the stream
   * `events`, and tells the meter of the terminal event it appended.
   */
  finishJobReply(events: string, state: 'completed' | 'failed' | 'cancelled', reply: ScriptReply): FinishJobReply {
    switch (reply[0]) {
      case 'ok':
        this.meter?.sink?.appended(RedisKeys.queueOfJobKey(events), 1);
        this.meter?.sink?.finished(RedisKeys.queueOfJobKey(events), state);
        return { status: 'ok', eventId: String(reply[1]), attempt: Number(reply[2]) };
      case 'final':
        return { status: 'final', state: String(reply[1]) };
      default:
        return { status: reply[0] as 'stale' | 'gone' };
    }
  }

  /** `'ok'`, or `'final'` / `'stale'` when the job ended or a newer attempt took over meanwhile. */
  requeueJob(meta: string, attempt: number): Promise<'ok' | 'final' | 'stale'> {
    return this.run('requeue-job', [meta], [attempt]);
  }

  /** A page of events after `cursor`, read only when `owner` (if given) owns the job and the cursor is one of its ids. */
  async readEvents(meta: string, events: string, owner: string | undefined, cursor: string, limit: number): Promise<ReadEventsReply> {
    const reply = await this.run<[string, string?, RawStreamEntry[]?, string?, string?]>(
      'read-events',
      [meta, events],
      [...ownerArgs(owner), cursor, limit],
    );
    if (reply[0] === 'gone' || reply[0] === 'cursor') return { status: reply[0] };
    return {
      status: 'ok',
      terminal: reply[1] || undefined,
      entries: reply[2] ?? [],
      abandonAfterMs: Number(reply[3]) || undefined,
      traceId: traceIdOf(reply[4]),
    };
  }

  /** Records a read of a job enqueued with `abandonAfterMs` (no-op for other jobs), at Redis's time. */
  touchRead(meta: string): Promise<number> {
    return this.run('touch-read', [meta], []);
  }

  /** Cancels the job with reason `abandoned` when no client read it for its `abandonAfterMs`. */
  async abandonUnread(meta: string, events: string, retentionMs: number): Promise<'abandoned' | 'read' | 'final' | 'gone'> {
    const reply = await this.run<'abandoned' | 'read' | 'final' | 'gone'>(
      'abandon-unread',
      [meta, events, RedisKeys.spareOfEvents(events)],
      [retentionMs],
    );
    if (reply === 'abandoned') {
      const queue = RedisKeys.queueOfJobKey(events);
      this.meter?.sink?.appended(queue, 1);
      this.meter?.sink?.finished(queue, 'cancelled');
      this.meter?.sink?.cancelled('abandoned');
    }
    return reply;
  }

  /** The job's final state, or undefined while it has none (a plain read: one key, nothing to keep atomic). */
  async finalState(meta: string): Promise<string | undefined> {
    const [terminal, state] = await this.redis.hmget(meta, 'terminal', 'state');
    return terminal === null ? undefined : (state ?? undefined);
  }

  /** Marks a job given back unstarted by this module's worker (see `hold-job.lua`); `create` gives a plain BullMQ job metadata. */
  holdJob(meta: string, create?: NewJobMeta): Promise<'ok' | 'final' | 'gone'> {
    return this.run(
      'hold-job',
      [meta],
      [create ? '1' : '0', create?.name ?? '', create?.maxAttempts ?? 1, create?.createdAt ?? Date.now()],
    );
  }

  /** May a job (`token`) of a breaker's name start now? Claims or renews the probe of a half-open breaker. */
  async breakerAdmit(state: string, token: string, leaseMs: number, coolDownMs: number): Promise<BreakerAdmitReply> {
    const reply = await this.run<ScriptReply>('breaker-admit', [state], [token, leaseMs, coolDownMs]);
    if (reply[0] !== 'wait') return { status: reply[0] as 'pass' | 'probe' };
    return { status: 'wait', retryAt: Number(reply[1]), openUntil: reply[2] === '' ? undefined : Number(reply[2]) };
  }

  /** Records an attempt's outcome (`attemptKey` unique per attempt) in a breaker; returns the state it left. */
  async breakerRecord(
    state: string,
    failures: string,
    outcome: 'success' | 'failure' | 'release',
    token: string,
    attemptKey: string,
    config: { failures: number; windowMs: number; coolDownMs: number },
  ): Promise<BreakerStateReply> {
    const reply = await this.run<ScriptReply>(
      'breaker-record',
      [state, failures],
      [outcome, token, attemptKey, config.failures, config.windowMs, config.coolDownMs],
    );
    return {
      state: reply[0] as BreakerStateReply['state'],
      recentFailures: Number(reply[1]),
      openUntil: reply[2] === '' ? undefined : Number(reply[2]),
    };
  }

  async breakerRead(state: string, failures: string, windowMs: number): Promise<BreakerStateReply> {
    const reply = await this.run<ScriptReply>('breaker-read', [state, failures], [windowMs]);
    return {
      state: reply[0] as BreakerStateReply['state'],
      recentFailures: Number(reply[1]),
      openUntil: reply[2] === '' ? undefined : Number(reply[2]),
      probe: reply[3] === '' ? undefined : String(reply[3]),
    };
  }

  /** The job's metadata hash, or `undefined` when unknown or (with `owner`) not the caller's. */
  async readJob(meta: string, owner: string | undefined): Promise<Record<string, string> | undefined> {
    const pairs = await this.run<string[]>('read-job', [meta], ownerArgs(owner));
    if (!pairs.length) return undefined;
    const hash: Record<string, string> = {};
    for (let i = 0; i < pairs.length; i += 2) hash[pairs[i]] = pairs[i + 1];
    return hash;
  }

  /**
   * Applies one entry of BullMQ's events stream (`entryId`) to a job, idempotently; `create`
   * gives a job seen for the first time its metadata (start and gap entries only).
   */
  async bridgeEntry(
    meta: string,
    events: string,
    entryId: string,
    entry: BridgeEntry,
    limits: { now: number; retentionMs: number; maxEvents: number },
    create?: NewJobMeta,
  ): Promise<BridgeEntryReply> {
    const args: Array<string | number> = [entryId, entry.kind];
    switch (entry.kind) {
      case 'start':
        args.push('', '', limits.now, limits.retentionMs, limits.maxEvents, entry.activeMs, '');
        break;
      case 'event':
        args.push(entry.type, entry.data, limits.now, limits.retentionMs, limits.maxEvents, '', '');
        break;
      case 'terminal':
        args.push(entry.state, entry.data, limits.now, limits.retentionMs, limits.maxEvents, entry.field, entry.value);
        break;
      case 'requeue':
        args.push('', '', limits.now, limits.retentionMs, limits.maxEvents, '', '');
        break;
      case 'gap':
        args.push('gap', entry.data, limits.now, limits.retentionMs, limits.maxEvents, '', '');
        break;
    }
    args.push(create?.name ?? '', create?.maxAttempts ?? 1, create?.createdAt ?? limits.now);
    const reply = await this.run<[BridgeEntryReply, string?]>('bridge-entry', [meta, events, RedisKeys.spareOfEvents(events)], args);
    // 'ok' with an event id: one event appended ('requeue' appends none).
    if (reply[0] === 'ok' && reply[1]) {
      const queue = RedisKeys.queueOfJobKey(events);
      this.meter?.sink?.appended(queue, 1);
      if (entry.kind === 'terminal') this.meter?.sink?.finished(queue, entry.state);
    }
    return reply[0];
  }

  /**
   * Applies consecutive progress entries of one job (`entries`: entry id, then data JSON, per
   * entry) in one call, idempotently: what {@link bridgeEntry} does for each, at the cost of one.
   */
  async bridgeProgress(meta: string, events: string, maxEvents: number, entries: string[]): Promise<BridgeEntryReply> {
    const reply = await this.run<[BridgeEntryReply, number?]>('bridge-progress', [meta, events], [maxEvents, ...entries]);
    if (reply[1]) this.meter?.sink?.appended(RedisKeys.queueOfJobKey(events), Number(reply[1]));
    return reply[0];
  }

  /** Takes or renews a bridge lease: `renewed`, `taken` (newly), or `held` by another process; `leaseMs` 0 releases it. */
  async bridgeLease(lease: string, token: string, leaseMs: number): Promise<'renewed' | 'taken' | 'held'> {
    const reply = await this.run<number>('bridge-lease', [lease], [token, leaseMs]);
    return reply === 1 ? 'renewed' : reply === 2 ? 'taken' : 'held';
  }

  /** Records a bridge's position while `token` holds the lease; false once it does not. */
  async bridgePosition(lease: string, position: string, token: string, entryId: string): Promise<boolean> {
    return (await this.run<number>('bridge-position', [lease, position], [token, entryId])) === 1;
  }
}
