import {
  QueueKeys,
  RedisConnection,
  RedisQueueBackend,
  createIORedisClient,
  isIRedisClient,
  isRedisInstance,
  type BackendFactory,
  type ConnectionOptions,
  type IRedisTransaction,
  type QueueBaseOptions,
  type RedisClient,
} from 'bullmq';
import { encodeProcessorCall, encodeProcessorJson } from '../../contract/encode-event.js';
import { COMPOSED_COMMANDS, installedBullCommands, type BullCommand, type BullCommands, type ComposedCommand } from './bullmq-commands.js';
import { scriptSource, type ScriptReply } from './job-scripts.js';
import type { StreamCalls } from './stream-calls.js';

/** A composed command: BullMQ's script of a command, then the job's stream write (see `scripts/with-bullmq-command.lua`). */
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
    const template = scriptSource('with-bullmq-command');
    scripts = {} as Record<ComposedCommand, ComposedScript>;
    for (const name of Object.keys(COMPOSED_COMMANDS) as ComposedCommand[]) {
      const command = bullmq.commands[name];
      // A function, not a string, as the replacement: BullMQ's Lua may hold `$` patterns.
      const lua = template.replace(/^--- @bullmq-command$/m, () => command.content);
      scripts[name] = { bullmq: command, name: `jq:${name}:${bullmq.version}`, lua };
    }
    composedScripts.set(bullmq.version, scripts);
  }
  return scripts;
}

/** The composed commands defined on each client (a client may be shared by several backends). */
const definedOn = new WeakMap<object, Set<string>>();

/**
 * BullMQ's Redis backend, with each `updateProgress` and `addLog` call of a job whose attempt the
 * bridge runs in this process (see {@link attach}) sent as **one** script: BullMQ's own script of
 * the command, taken from the installed `bullmq`, and then, when it succeeded, the append of the
 * call's event to the job's stream. BullMQ gets its own reply back unchanged (the same value, the
 * same errors); the stream's reply goes to the attempt. Every other command, and the calls of jobs
 * without an attached attempt, are BullMQ's alone, as with `createRedisBackend`.
 *
 * Made by {@link jobStreamsBackend}; `JobQueueWorker` uses it unless given a factory of its own.
 *
 * @publicApi
 */
export class JobStreamsBackend extends RedisQueueBackend {
  /** The running attempts of this backend's queue in this process whose calls are composed, by job id. */
  private readonly attached = new Map<string, StreamCalls>();
  private readonly scripts: Record<ComposedCommand, ComposedScript>;

  constructor(...args: ConstructorParameters<typeof RedisQueueBackend>) {
    super(...args);
    // Checked here, at start-up: a bullmq whose commands do not fit stops the worker from being made.
    this.scripts = composedScriptsOf(installedBullCommands());
  }

  /**
   * True when this backend can compose: one Redis server. On Redis Cluster a job's stream keys lie
   * in another hash slot than BullMQ's job key (the key layout that puts them together comes
   * later), and one script over both would fail with CROSSSLOT there.
   */
  async composes(): Promise<boolean> {
    return !(await this.queue.client).isCluster;
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

  override execCommand(client: RedisClient | IRedisTransaction, commandName: string, args: unknown[]): unknown {
    if (commandName === 'updateProgress' || commandName === 'addLog') {
      const script = this.scripts[commandName];
      // BullMQ's arguments start with the job id, after its keys.
      const calls = this.attached.get(String(args[script.bullmq.keys]));
      if (calls?.writing) return this.composed(client as RedisClient, script, args, calls);
    }
    return super.execCommand(client, commandName, args);
  }

  /** Runs BullMQ's command and the call's stream write as one script; resolves to BullMQ's reply. */
  private async composed(client: RedisClient, script: ComposedScript, args: unknown[], calls: StreamCalls): Promise<unknown> {
    const keyCount = script.bullmq.keys;
    const event =
      script.bullmq.name === 'updateProgress'
        ? encodeProcessorJson('progress', args[keyCount + 1] as string | undefined, calls.maxEventBytes)
        : encodeProcessorCall('log', { message: args[keyCount + 1] }, calls.maxEventBytes);
    if (!event) return super.execCommand(client, script.bullmq.name, args);
    // Numbered now, before the first await: the order of the sequence numbers is the order in which
    // BullMQ hands its commands to the connection.
    const ours = calls.next(event.type, event.json);
    let defined = definedOn.get(client);
    if (!defined) definedOn.set(client, (defined = new Set()));
    if (!defined.has(script.name)) {
      client.defineCommand(script.name, { numberOfKeys: keyCount + 2, lua: script.lua });
      defined.add(script.name);
    }
    const reply = (await client.runCommand(script.name, [
      ...ours.keys,
      ...args.slice(0, keyCount),
      ...ours.args,
      ...args.slice(keyCount),
    ])) as [unknown, ScriptReply?];
    calls.settle(reply[1]);
    return reply[0] ?? null;
  }
}

/**
 * Duplicates a caller-supplied client, as `createRedisBackend` does: ioredis clients through
 * BullMQ's ioredis adapter, other clients with their own `duplicate()`.
 */
function duplicateClient(client: RedisClient, connectionName?: string): RedisClient {
  const withName = connectionName ? { connectionName } : undefined;
  if (isIRedisClient(client) || typeof (client as { defineCommand?: unknown }).defineCommand === 'function') {
    return (isIRedisClient(client) ? client : createIORedisClient(client as never)).duplicate(withName);
  }
  return (client as { duplicate(opts?: unknown): RedisClient }).duplicate(connectionName ? { name: connectionName } : undefined);
}

/**
 * A {@link JobStreamsBackend} factory for BullMQ's `Queue`, `Worker` and `QueueEvents`: the
 * connections are made exactly as BullMQ's default factory (`createRedisBackend`) makes them
 * (the main one, a duplicate of a caller's client for blocking use, a worker's blocking
 * connection named after its queue), only the backend class differs.
 *
 * @example
 * ```ts
 * const worker = new JobQueueWorker('reports', processor, { connection }, jobStreamsBackend());
 * ```
 *
 * @throws IncompatibleBullMqError when the installed `bullmq` lacks a command the backend composes
 * with, or ships it in another shape (checked at once, and again as each backend is made).
 * @publicApi
 */
export function jobStreamsBackend(): BackendFactory<JobStreamsBackend> {
  installedBullCommands();
  return (name: string, opts: QueueBaseOptions<ConnectionOptions>, { blocking = false, withBlockingConnection = false } = {}) => {
    const shared = isRedisInstance(opts.connection);
    // A blocking consumer must not block the caller's shared client.
    const main = blocking && shared ? duplicateClient(opts.connection as RedisClient) : opts.connection;
    const connection = new RedisConnection(main as ConnectionOptions, {
      shared: !blocking && shared,
      blocking,
      skipVersionCheck: opts.skipVersionCheck,
      skipWaitingForReady: opts.skipWaitingForReady,
    });
    const { prefix, name: workerName } = opts as { prefix?: string; name?: string };
    let blockingConnection: RedisConnection | undefined;
    if (withBlockingConnection) {
      const connectionName = `${prefix ?? 'bull'}:${Buffer.from(name).toString('base64')}${workerName ? `:w:${workerName}` : ''}`;
      blockingConnection = new RedisConnection(
        shared
          ? duplicateClient(opts.connection as RedisClient, connectionName)
          : ({ ...opts.connection, connectionName } as ConnectionOptions),
        { shared: false, blocking: true, skipVersionCheck: opts.skipVersionCheck },
      );
    }
    const queueKeys = new QueueKeys(prefix);
    return new JobStreamsBackend(
      connection,
      name,
      queueKeys.getKeys(name),
      (type) => queueKeys.toKey(name, type),
      opts,
      blockingConnection,
    );
  };
}
