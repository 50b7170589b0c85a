import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { createRedisBackend, type BackendFactory, type IRedisTransaction, type RedisClient, type RedisQueueBackend } from 'bullmq';
import { encodeProcessorCall, encodeProcessorJson } from '../../contract/encode-event.js';
import {
  COMPOSED_ADDS,
  COMPOSED_COMMANDS,
  installedBullCommands,
  installedKeyCount,
  type BullCommand,
  type BullCommands,
  type ComposedCommand,
} from './bullmq-commands.js';
import { JOB_QUEUE_DEFAULTS } from '../../options/validate-job-queue-options.js';
import { decodeAppendEvents, finishJobCall, scriptSource, type ScriptReply } from './job-scripts.js';
import { RedisKeys } from './redis-keys.js';
import { StreamCalls } from './stream-calls.js';
import { terminalOf } from './terminal-event.js';

/**
 * What the streams of the jobs a plain BullMQ `Worker` runs through a {@link jobStreamsBackend}
 * may hold. Set them as `JobQueueModule`'s options of the same names, which the module's own
 * workers use; each defaults to that option's default.
 *
 * @publicApi
 */
export interface JobStreamsBackendOptions {
  /** Most events one job's stream holds, its terminal event included (100,000 unless set). */
  maxEventsPerJob?: number;
  /** Largest JSON text of a `progress` or `log` event's data, in bytes (64 KiB unless set); a larger call becomes a `gap` event. */
  maxEventBytes?: number;
  /** How long an ended job's stream and metadata are kept, in ms (one hour unless set). */
  retentionMs?: number;
}

/**
 * A composed command: BullMQ's script of a command, then the module's write: the job's stream
 * write (`scripts/with-bullmq-command.lua`), or a new job's metadata (`scripts/with-bullmq-add.lua`).
 */
export interface ComposedScript {
  bullmq: BullCommand;
  /** Its command name on a client (BullMQ's name and version, under this library's prefix). */
  name: string;
  lua: string;
}

const composedScripts = new Map<string, Record<ComposedCommand, ComposedScript>>();

/** The composed scripts of `bullmq`'s commands, made once per BullMQ version. */
export function composedScriptsOf(bullmq: BullCommands): Record<ComposedCommand, ComposedScript> {
  let scripts = composedScripts.get(bullmq.version);
  if (!scripts) {
    scripts = {} as Record<ComposedCommand, ComposedScript>;
    for (const name of Object.keys(COMPOSED_COMMANDS) as ComposedCommand[]) {
      const command = bullmq.commands[name];
      const template = scriptSource(TEMPLATES[name] ?? 'with-bullmq-command');
      // A function, not a string, as the replacement: BullMQ's Lua may hold `$` patterns.
      const lua = template.replace(/^--- @bullmq-command$/m, () => command.content);
      scripts[name] = { bullmq: command, name: `jq:${name}:${bullmq.version}`, lua };
    }
    composedScripts.set(bullmq.version, scripts);
  }
  return scripts;
}

/** The wrapper of each composed command that is not an `updateProgress`/`addLog` (`with-bullmq-command`). */
const TEMPLATES: Partial<Record<ComposedCommand, string>> = {
  addStandardJob: 'with-bullmq-add',
  addDelayedJob: 'with-bullmq-add',
  addPrioritizedJob: 'with-bullmq-add',
  moveToActive: 'with-bullmq-fetch',
  moveToFinished: 'with-bullmq-finish',
};

/**
 * How the worker a backend serves starts the attempts of the jobs BullMQ gives it (see
 * {@link JobStreamsBackend.startAttempts}).
 */
export interface AttemptStarts {
  /** True to give metadata, without an owner, to a job that has none (a processor's queue). */
  create: boolean;
  maxEventsPerJob: number;
  /**
   * The job names that have a circuit breaker: every name `except` those listed, or `only` those.
   * Their attempts are not started with BullMQ's move: the worker admits them through the breaker first.
   */
  breakers: () => { mode: 'only' | 'except'; names: readonly string[] };
}

/** The module's `requeue-job` script, as a plain `Worker`'s backend runs it (see {@link JobStreamsBackend.ownRetry}). */
const requeueJob = (): { name: string; lua: string } => ({ name: 'jq:requeue-job', lua: scriptSource('requeue-job') });

/** No job name has a circuit breaker (a plain `Worker`'s jobs). */
const NO_BREAKERS = { mode: 'only', names: [] } as const;

/**
 * True for a batch of BullMQ's (a pipeline, as `addBulk` sends, or a `multi`): its commands are
 * queued and answered together, in replies BullMQ reads as its own.
 */
function isBatch(client: RedisClient | IRedisTransaction): boolean {
  return typeof (client as { duplicate?: unknown }).duplicate !== 'function';
}

function isAdd(name: string): name is (typeof COMPOSED_ADDS)[number] {
  return (COMPOSED_ADDS as readonly string[]).includes(name);
}

/** The metadata of a job being added (see {@link JobStreamsBackend.addingJob}), until its add is sent. */
interface PendingAdd {
  metaKey: string;
  fields: Array<string | number>;
  sent: boolean;
}

const pendingAdd = new AsyncLocalStorage<PendingAdd>();

/** A job's terminal event waiting for BullMQ's move of the job to completed or failed (see {@link JobStreamsBackend.finishWith}). */
interface PendingFinish {
  /**
   * The lock token of the run whose end this is: only a move of that run writes it. `'*'`: the
   * end of the move that carries it, whatever its token (a plain `Worker`'s, see {@link JobStreamsBackend.ownEnd}).
   */
  token: string;
  keys: readonly string[];
  args: ReadonlyArray<string | number>;
  settle(reply: ScriptReply | undefined): void;
}

/** A start made inside BullMQ's move of a job to active (see {@link JobStreamsBackend.takeStart}). */
export interface KeptStart {
  /** What `start-attempt` replied. */
  reply: ScriptReply;
  /** The run id it was sent with: `start-attempt` sent again with it answers the same (replica acks write it again so). */
  runId: string;
}

/** append-events' reply for one event appended (a composed call's flat reply says so; see with-bullmq-command.lua). */
const APPENDED_ONE: ScriptReply = ['ok', 1, ''];

/** The composed commands defined on each client (a client may be shared by several backends). */
const definedOn = new WeakMap<object, Set<string>>();

/**
 * The part of a backend made by {@link jobStreamsBackend} that composes: each BullMQ command that
 * changes what a job's stream shows goes to Redis as **one** script, BullMQ's own script of the
 * command (taken from the installed `bullmq`), then the module's write: a new job's metadata with
 * its add ({@link addingJob}), the attempt's start with the move to active, each `updateProgress`
 * and `addLog` call's event, the terminal event with the move to finished. BullMQ gets its own
 * reply back unchanged (the same value, the same errors). Who runs the attempts decides what is
 * written: a worker of the module ({@link drive}) attaches them ({@link attach},
 * {@link finishWith}, {@link startAttempts}); for a plain `Worker` the backend runs them itself,
 * from BullMQ's commands and replies alone. It sits on the backend BullMQ's default factory made
 * (its `execCommand`, the one method through which that backend sends every script, is routed
 * through {@link execCommand} on that instance only), so the connections are made as BullMQ
 * makes them, whatever its version.
 */
export class JobStreamsBackend {
  private static readonly byBackend = new WeakMap<object, JobStreamsBackend>();
  /** The running attempts of the backend's queue in this process whose calls are composed, by job id. */
  private readonly attached = new Map<string, StreamCalls>();
  /** Terminal events of jobs of this process waiting for BullMQ's move to finished, by job id. */
  private readonly finishing = new Map<string, PendingFinish>();
  /** Set by {@link startAttempts}: BullMQ's moves to active start the attempts too. */
  private starts?: AttemptStarts;
  /**
   * `start-attempt` replies of jobs BullMQ moved to active, with BullMQ's count of the job's starts
   * then (`ats`), until the worker takes them (see {@link takeStart}).
   */
  private readonly started = new Map<string, { starts: string } & KeptStart>();
  private readonly scripts: Record<ComposedCommand, ComposedScript>;
  private readonly bullExecCommand: RedisQueueBackend['execCommand'];
  /**
   * True once a worker of the module drives the attempts (see {@link drive}); until then the
   * backend runs each attempt of a plain `Worker` itself (see {@link ownRuns}).
   */
  private driven = false;
  /**
   * The attempt a plain `Worker` runs of each job it was given, by job id: started inside BullMQ's
   * move to active, its calls composed, its end written with BullMQ's move to finished. An entry
   * stays until that move, or the next start of the same job in this worker.
   */
  private readonly ownRuns = new Map<string, { calls: StreamCalls; attempt: number }>();
  private readonly limits: Required<JobStreamsBackendOptions>;
  /** Set by {@link giveAddsMetadata}: BullMQ's key prefix of the queue whose plain adds get metadata. */
  private queueKeyPrefix?: string;

  private constructor(
    private readonly backend: RedisQueueBackend,
    options: JobStreamsBackendOptions,
  ) {
    // Checked here, at start-up: a bullmq whose commands do not fit stops the worker from being made.
    this.scripts = composedScriptsOf(installedBullCommands());
    this.limits = {
      maxEventsPerJob: options.maxEventsPerJob ?? JOB_QUEUE_DEFAULTS.maxEventsPerJob,
      maxEventBytes: options.maxEventBytes ?? JOB_QUEUE_DEFAULTS.maxEventBytes,
      retentionMs: options.retentionMs ?? JOB_QUEUE_DEFAULTS.retentionMs,
    };
    // A plain Worker's attempts start with BullMQ's moves; a queue never sends one.
    this.starts = { create: true, maxEventsPerJob: this.limits.maxEventsPerJob, breakers: () => NO_BREAKERS };
    this.bullExecCommand = backend.execCommand.bind(backend);
    backend.execCommand = (client, commandName, args) => this.execCommand(client, commandName, args);
    JobStreamsBackend.byBackend.set(backend, this);
  }

  /** Makes `backend` compose. */
  static around<B extends RedisQueueBackend>(backend: B, options: JobStreamsBackendOptions = {}): B {
    new JobStreamsBackend(backend, options);
    return backend;
  }

  /**
   * Gives each job a plain `add` of the queue this backend serves makes (BullMQ's key prefix of
   * the queue: `queueKeyPrefix`) its metadata in the same script, without an owner, `queued`
   * (see {@link JobStreamsQueue}).
   */
  giveAddsMetadata(queueKeyPrefix: string): void {
    this.queueKeyPrefix = queueKeyPrefix;
  }

  /**
   * Hands the attempts of the worker this backend serves to a driver of the module (a
   * `JobQueueWorker`'s bridge, the `@JobHandler` runtime): from now on the backend composes only
   * what that driver attaches ({@link attach}, {@link finishWith}, {@link startAttempts}).
   * Called right after the worker is made, before it sends its first command.
   */
  drive(): void {
    this.driven = true;
    this.starts = undefined;
  }

  /** The composing part of `backend`, when {@link jobStreamsBackend} made it. */
  static of(backend: unknown): JobStreamsBackend | undefined {
    return typeof backend === 'object' && backend !== null ? JobStreamsBackend.byBackend.get(backend) : undefined;
  }

  /**
   * Sends the `updateProgress` and `addLog` calls of job `jobId` through `calls` until
   * {@link detach}. One job id has one attempt attached at a time: a newer run of the same job in
   * this process (after a lost lock) takes its calls over.
   */
  attach(jobId: string, calls: StreamCalls): void {
    this.attached.set(jobId, calls);
  }

  /** Ends what {@link attach} began, unless a newer run of the job attached its own calls meanwhile. */
  detach(jobId: string, calls: StreamCalls): void {
    if (this.attached.get(jobId) === calls) this.attached.delete(jobId);
  }

  /**
   * Runs `add` (which adds one job through a `Queue` whose backend this is) so that BullMQ's add
   * and the job's metadata `fields`, stored as the hash `metaKey`, are one script: no worker sees
   * the job before its metadata, and a refused add writes none. Resolves as `add` does.
   */
  static async addingJob<T>(metaKey: string, fields: Record<string, string | number>, add: () => Promise<T>): Promise<T> {
    const adding: PendingAdd = { metaKey, fields: Object.entries(fields).flat(), sent: false };
    const added = await pendingAdd.run(adding, add);
    // An add BullMQ sent by a command this backend does not compose (or through another backend)
    // wrote the job without its metadata: the caller takes it back.
    if (!adding.sent) throw new Error('BullMQ added the job by a command that does not write its metadata');
    return added;
  }

  /**
   * Makes the move of job `jobId` to completed or failed by the run holding lock `token` (BullMQ's
   * `moveToFinished`, sent once the processor returned or threw) one script with the `finish-job`
   * call `call` (see `scripts/with-bullmq-finish.lua`). Resolves to finish-job's reply once that
   * run's move is accepted and answered, or to `undefined` when a later call for the same job
   * replaced this one. The moves of other runs of the job (one that lost the lock, in this worker)
   * carry it too and write nothing; a move BullMQ refuses writes nothing (BullMQ runs the job
   * again), and BullMQ's retry of a failed move carries it again. A job whose move never comes
   * (the process stops first) keeps its entry until then: BullMQ runs it again elsewhere.
   */
  finishWith(
    jobId: string,
    token: string,
    call: { keys: readonly string[]; args: ReadonlyArray<string | number> },
  ): Promise<ScriptReply | undefined> {
    return new Promise((settle) => {
      this.finishing.get(jobId)?.settle(undefined);
      this.finishing.set(jobId, { token, ...call, settle });
    });
  }

  /**
   * From now on, each job BullMQ's moves to active give the worker (`moveToActive`, and
   * `moveToFinished` when it fetches the next job) has its attempt started in the same script:
   * `started`, the attempt counter and the cancel check, as `start-attempt` does, so that no reader
   * sees the job active without its `started`. The worker takes the outcome with {@link takeStart}.
   */
  startAttempts(starts: AttemptStarts): void {
    this.starts = starts;
  }

  /**
   * The start of job `jobId`, when BullMQ's move to active started its attempt (once; its reply
   * is `{'unstarted'}` when the job's name has a circuit breaker), or `undefined`.
   */
  takeStart(job: { id?: string; attemptsStarted?: number }): KeptStart | undefined {
    const jobId = String(job.id);
    const kept = this.started.get(jobId);
    this.started.delete(jobId);
    // Only the start of this very activation (a job activated and never processed leaves one behind).
    return kept && kept.starts === String(job.attemptsStarted ?? '') ? kept : undefined;
  }

  private execCommand(client: RedisClient | IRedisTransaction, commandName: string, args: unknown[]): unknown {
    if (commandName === 'moveToFinished') {
      const script = this.scripts.moveToFinished;
      // BullMQ's arguments start with the job id, after its keys.
      const jobId = String(args[script.bullmq.keys]);
      // The end stays until a move of its own run wrote it: another run of the job in this
      // worker (one that lost the lock) may send its move first, or at the same time.
      const pending = this.driven ? this.finishing.get(jobId) : this.ownEnd(jobId, args, script.bullmq.keys);
      if (pending || this.starts) return this.composedFinish(client as RedisClient, script, args, jobId, pending);
    } else if (commandName === 'moveToActive') {
      if (this.starts) return this.composedFetch(client as RedisClient, this.scripts.moveToActive, args);
    } else if (isAdd(commandName)) {
      const adding = pendingAdd.getStore();
      if (adding && !adding.sent) {
        adding.sent = true;
        return this.composedAdd(client as RedisClient, this.scripts[commandName], args, adding);
      }
      // A plain add of a JobStreamsQueue; not one inside a batch of BullMQ's (addBulk's pipeline),
      // whose replies BullMQ reads as its own: those jobs get their metadata when first read or started.
      if (!adding && this.queueKeyPrefix !== undefined && !isBatch(client)) {
        return this.composedAdd(client as RedisClient, this.scripts[commandName], args, this.queueKeyPrefix);
      }
    } else if (!this.driven && (commandName === 'retryJob' || commandName === 'moveToDelayed')) {
      const retried = this.ownRetry(client as RedisClient, commandName, args);
      if (retried) return retried;
    } else if (commandName === 'updateProgress' || commandName === 'addLog') {
      const script = this.scripts[commandName];
      // BullMQ's arguments start with the job id, after its keys.
      const calls = this.attached.get(String(args[script.bullmq.keys]));
      if (calls?.writing) return this.composed(client as RedisClient, script, args, calls);
    }
    return this.bullExecCommand(client, commandName, args as never[]);
  }

  /**
   * Runs BullMQ's add and the new job's metadata as one script; resolves to BullMQ's reply. The
   * metadata is `adding`'s, or, given BullMQ's key prefix of the queue, made from what BullMQ
   * stored of the job (no owner; see {@link giveAddsMetadata}).
   */
  private async composedAdd(client: RedisClient, script: ComposedScript, args: unknown[], adding: PendingAdd | string): Promise<unknown> {
    const keyCount = script.bullmq.keys;
    this.define(client, script, keyCount + 1);
    // BullMQ's keys and arguments first, where its script reads them (see with-bullmq-add.lua).
    const [metaKey, ours] =
      typeof adding === 'string' ? [args[0], [adding, 'job']] : [adding.metaKey, [...adding.fields, adding.fields.length / 2]];
    const reply = (await client.runCommand(script.name, [...args.slice(0, keyCount), metaKey, ...args.slice(keyCount), ...ours])) as [
      unknown,
    ];
    return reply[0];
  }

  /** The arguments of `include-start-fetched.lua`, or `['']` when attempts are not started here. */
  private startArgs(): Array<string | number> {
    if (!this.starts) return [''];
    const breakers = this.starts.breakers();
    return [
      Date.now(),
      this.starts.maxEventsPerJob,
      randomUUID(),
      this.starts.create ? '1' : '0',
      breakers.mode,
      JSON.stringify(breakers.names),
    ];
  }

  /**
   * Keeps the start of the job BullMQ's move gave the worker (`bullmqReply`), for {@link takeStart};
   * for a plain `Worker`, runs its attempt here. `keyPrefix`: BullMQ's key prefix of the queue.
   */
  private keepStart(bullmqReply: unknown, startReply: ScriptReply | 0 | undefined, keyPrefix: string, runId: string): void {
    if (!startReply || !Array.isArray(bullmqReply) || !bullmqReply[1] || !Array.isArray(bullmqReply[0])) return;
    const jobId = String(bullmqReply[1]);
    if (!this.driven) return this.runOwn(jobId, keyPrefix + jobId, startReply);
    // BullMQ's reply holds the job's fields as a flat list: its count of starts (`ats`) among them.
    const fields = bullmqReply[0] as unknown[];
    const at = fields.findIndex((field, index) => index % 2 === 0 && String(field) === 'ats');
    this.started.set(jobId, { starts: at < 0 ? '' : String(fields[at + 1]), reply: startReply, runId });
  }

  /**
   * Runs the attempt of job `jobId` (BullMQ's key `jobKey`) a plain `Worker` was just given, whose
   * start replied `startReply`: its `updateProgress` and `addLog` calls are composed from now on.
   * A job that did not start (cancelled before, or its stream full) runs as BullMQ's alone.
   */
  private runOwn(jobId: string, jobKey: string, startReply: ScriptReply): void {
    this.endOwn(jobId);
    if (startReply[0] !== 'ok') return;
    const attempt = Number(startReply[1]);
    const { meta, events } = RedisKeys.ofBullJob(jobKey);
    const calls = new StreamCalls({
      metaKey: meta,
      eventsKey: events,
      attempt,
      maxEvents: this.limits.maxEventsPerJob,
      maxEventBytes: this.limits.maxEventBytes,
      decode: decodeAppendEvents,
      // Nothing to stop: a plain Worker's processor runs on; its later calls are BullMQ's alone.
      onStop: () => undefined,
    });
    this.ownRuns.set(jobId, { calls, attempt });
    this.attach(jobId, calls);
  }

  /** Ends the attempt {@link runOwn} runs of job `jobId`, if any; returns it. */
  private endOwn(jobId: string): { calls: StreamCalls; attempt: number } | undefined {
    const run = this.ownRuns.get(jobId);
    if (!run) return undefined;
    this.ownRuns.delete(jobId);
    run.calls.close();
    this.detach(jobId, run.calls);
    return run;
  }

  /**
   * A plain `Worker`'s retry of a job whose attempt it ran (BullMQ's `retryJob`, or `moveToDelayed`
   * after a backoff): sent as BullMQ's, then, once BullMQ moved the job, the job reads `queued` (a
   * `requeue-job` call of its own: retries are rare, and BullMQ's retry commands take other keys
   * in other 6.x versions). `moveToDelayed` is sent without fetching the next job, which then
   * comes through BullMQ's move to active and starts there. `undefined` for a command this
   * backend does not know the shape of.
   */
  private ownRetry(client: RedisClient, commandName: 'retryJob' | 'moveToDelayed', args: unknown[]): Promise<unknown> | undefined {
    const keyCount = installedKeyCount(commandName);
    if (keyCount === undefined) return undefined;
    // BullMQ's arguments: the queue's key prefix first; the job id 4th (retryJob) or 3rd
    // (moveToDelayed); moveToDelayed's 8th and 9th ask for the next job.
    const jobId = String(args[keyCount + (commandName === 'retryJob' ? 3 : 2)]);
    const jobKey = String(args[keyCount]) + jobId;
    const sent = [...args];
    if (commandName === 'moveToDelayed' && sent.length === keyCount + 9) {
      sent[keyCount + 7] = 0;
      sent[keyCount + 8] = undefined;
    }
    const run = this.ownRuns.get(jobId);
    return (async () => {
      const reply = await this.bullExecCommand(client, commandName, sent as never[]);
      // As with the move to finished, the run ends with a retry BullMQ accepted: a refused one (a
      // run that lost its lock) leaves a newer run of the job in this worker composing.
      if (run && !(typeof reply === 'number' && reply < 0)) {
        if (this.ownRuns.get(jobId) === run) this.endOwn(jobId);
        const script = requeueJob();
        this.define(client, script, 1);
        try {
          await client.runCommand(script.name, [RedisKeys.ofBullJob(jobKey).meta, run.attempt]);
        } catch {
          // The job reads `active` until its next attempt starts: nothing is lost.
        }
      }
      return reply;
    })();
  }

  /**
   * The terminal event a plain `Worker`'s move of job `jobId` to finished (BullMQ's arguments
   * `args`, after `keyCount` keys) writes: the outcome BullMQ records (its target state and the
   * return value's JSON or the failed reason), for the attempt the backend started. It goes with
   * that move only (`'*'`), and only when BullMQ accepts it.
   */
  private ownEnd(jobId: string, args: unknown[], keyCount: number): PendingFinish {
    const run = this.ownRuns.get(jobId);
    const state = String(args[keyCount + 4]) === 'completed' ? 'completed' : 'failed';
    const value = String(args[keyCount + 3]);
    const { data, field } = terminalOf(state === 'completed' ? { result: value } : { error: value });
    // BullMQ's 12th key of the move is its key of the job.
    const own = RedisKeys.ofBullJob(String(args[11]));
    const call = finishJobCall(own.meta, own.events, state, data, Date.now(), this.limits.retentionMs, field, run?.attempt);
    // The run ends with a move BullMQ accepted: a refused one (a run of the job that lost its
    // lock, while a newer run of it goes on in this worker) leaves the newer run's calls composed.
    const settle = (reply: ScriptReply | undefined): void => {
      if (reply?.[0] !== 'refused' && this.ownRuns.get(jobId) === run) this.endOwn(jobId);
    };
    return { token: '*', ...call, settle };
  }

  /** Runs BullMQ's move to active and the start of the attempt of the job it gives as one script; resolves to BullMQ's reply. */
  private async composedFetch(client: RedisClient, script: ComposedScript, args: unknown[]): Promise<unknown> {
    const keyCount = script.bullmq.keys;
    this.define(client, script, keyCount);
    const startArgs = this.startArgs();
    const reply = (await client.runCommand(script.name, [...args, ...startArgs])) as [unknown, ScriptReply?];
    // BullMQ's first argument of the move: its key prefix of the queue.
    this.keepStart(reply[0], reply[1], String(args[keyCount]), String(startArgs[2]));
    return reply[0];
  }

  /**
   * Runs BullMQ's move to finished, the job's terminal event (when `pending`) and the start of the
   * attempt of the next job it gives (when attempts start here) as one script; resolves to BullMQ's reply.
   */
  private async composedFinish(
    client: RedisClient,
    script: ComposedScript,
    args: unknown[],
    jobId: string,
    pending: PendingFinish | undefined,
  ): Promise<unknown> {
    const keyCount = script.bullmq.keys;
    this.define(client, script, keyCount + 3);
    // Without a terminal event to write, the keys are still the job's own (declared, never written):
    // BullMQ's 12th key of the move is its key of the job.
    const own = RedisKeys.ofBullJob(String(args[11]));
    const keys = pending?.keys ?? [own.meta, own.events, RedisKeys.spareOfEvents(own.events)];
    const finishArgs = pending ? [pending.token, ...pending.args] : ['', '', '', '', '', '', '', ''];
    const startArgs = this.startArgs();
    // BullMQ's keys and arguments first, where its script reads them (see with-bullmq-finish.lua).
    const reply = (await client.runCommand(script.name, [
      ...args.slice(0, keyCount),
      ...keys,
      ...args.slice(keyCount),
      ...finishArgs,
      ...startArgs,
      ...Array(6 - startArgs.length).fill(''),
    ])) as [unknown, ScriptReply | 0, ScriptReply | 0];
    if (pending && reply[1]) {
      // BullMQ answered the move of the end's own run: written, refused, or failed in Redis.
      if (this.finishing.get(jobId) === pending) this.finishing.delete(jobId);
      pending.settle(reply[1]);
    }
    // BullMQ's 7th argument of the move: its key prefix of the queue.
    this.keepStart(reply[0], reply[2], String(args[keyCount + 6]), String(startArgs[2] ?? ''));
    return reply[0];
  }

  /** Defines `script` on `client` once. */
  private define(client: RedisClient, script: { name: string; lua: string }, numberOfKeys: number): void {
    let defined = definedOn.get(client);
    if (!defined) definedOn.set(client, (defined = new Set()));
    if (!defined.has(script.name)) {
      client.defineCommand(script.name, { numberOfKeys, lua: script.lua });
      defined.add(script.name);
    }
  }

  /** Runs BullMQ's command and the call's stream write as one script; resolves to BullMQ's reply. */
  private async composed(client: RedisClient, script: ComposedScript, args: unknown[], calls: StreamCalls): Promise<unknown> {
    const keyCount = script.bullmq.keys;
    const event =
      script.bullmq.name === 'updateProgress'
        ? encodeProcessorJson('progress', args[keyCount + 1] as string | undefined, calls.maxEventBytes)
        : encodeProcessorCall('log', { message: args[keyCount + 1] }, calls.maxEventBytes);
    if (!event) return this.bullExecCommand(client, script.bullmq.name, args as never[]);
    // Numbered now, before the first await: the order of the sequence numbers is the order in which
    // BullMQ hands its commands to the connection.
    const ours = calls.next(event.type, event.json);
    this.define(client, script, keyCount + 2);
    // BullMQ's keys and arguments first, where its script reads them (see with-bullmq-command.lua).
    const reply = (await client.runCommand(script.name, [
      ...args.slice(0, keyCount),
      ...ours.keys,
      ...args.slice(keyCount),
      ...ours.args,
    ])) as number | [unknown, ScriptReply];
    if (Array.isArray(reply)) {
      calls.settle(ours, reply[1]);
      return reply[0];
    }
    // BullMQ's reply alone: the event went in, unless BullMQ refused the call.
    calls.settle(ours, reply >= 0 ? APPENDED_ONE : undefined);
    return reply;
  }
}

/**
 * A factory for BullMQ's `Queue`, `Worker` and `QueueEvents` whose backends are BullMQ's own
 * (made by its default factory, `createRedisBackend`, connections and all) with every command
 * that changes what a job's stream shows sent as one script with the job's stream write (see
 * {@link JobStreamsBackend}).
 *
 * - A plain `Worker` made with it is bridged on its own: each job it is given starts its attempt
 *   (`started`) inside BullMQ's move to active, each `updateProgress` and `log` call is one script
 *   with its event, and the move to completed or failed writes the terminal event from what
 *   BullMQ records. Jobs added without the module get metadata without an owner (read them with
 *   system access). `options` sets the limits of those streams; use the module's values.
 * - A `JobQueueWorker` (and the module's `@JobHandler` worker) uses it by default and drives the
 *   attempts itself: cancel, circuit breakers, the event cap.
 *
 * A plain `Worker` cannot be stopped by the module: a job cancelled before it starts still
 * reaches its processor (the stream stays `cancelled`, and the processor's calls are BullMQ's
 * alone); use a `JobQueueWorker` to have cancel abort the processor.
 *
 * @example
 * ```ts
 * const worker = new Worker('reports', processor, { connection }, jobStreamsBackend());
 * ```
 *
 * @throws IncompatibleBullMqError when the installed `bullmq` lacks a command the backend composes
 * with, or ships it in another shape (checked at once, and again as each backend is made).
 * @publicApi
 */
export function jobStreamsBackend(options: JobStreamsBackendOptions = {}): BackendFactory<RedisQueueBackend> {
  return composingBackends(createRedisBackend as BackendFactory, options);
}

/**
 * A factory whose backends are those `factory` (BullMQ's default when undefined) makes, composing
 * as {@link jobStreamsBackend}'s do.
 *
 * @throws IncompatibleBullMqError as {@link jobStreamsBackend} does.
 * @throws TypeError (when a backend is made) when `factory` makes one that is not BullMQ's Redis
 * backend: only that one sends its commands as the scripts the module composes with.
 */
export function composingBackends(
  factory: BackendFactory = createRedisBackend as BackendFactory,
  options: JobStreamsBackendOptions = {},
): BackendFactory<RedisQueueBackend> {
  installedBullCommands();
  return (name, opts, factoryOptions) => {
    const backend = factory(name, opts as never, factoryOptions as never) as Partial<RedisQueueBackend>;
    // Made by a factory of the module already (jobStreamsBackend() given to a JobQueueWorker): composing.
    if (JobStreamsBackend.of(backend)) return backend as RedisQueueBackend;
    if (typeof backend?.execCommand !== 'function') {
      throw new TypeError('The backend factory must make BullMQ Redis backends (with execCommand) for the module to compose with');
    }
    return JobStreamsBackend.around(backend as RedisQueueBackend, options);
  };
}
