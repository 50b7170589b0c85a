import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Logger } from '@nestjs/common';
import type { BridgeEntry, BridgeEntryReply, JobScripts, NewJobMeta } from '../job-scripts.js';
import { attemptsOf } from '../bull-job-attempts.js';
import { duplicateClient, type RedisClient } from '../redis-connection.js';
import { hashTagOf, type RedisKeys } from '../redis-keys.js';
import type { QueueBridgeStatus } from '../../../contract/queue-bridge-status.js';
import { BusyStreamPause } from './busy-stream-pause.js';
import { compareStreamIds, streamIdBefore, timestampOf } from '../../../reader/stream-id.js';

/** How long a bridge lease lasts; its holder renews it three times as often. A dead holder's queue is taken over within about this long. */
const DEFAULT_LEASE_MS = 3000;
/** An `active` entry not followed by another entry of its job is applied after this long (see {@link QueueEventsBridge}). */
const START_GRACE_MS = 1000;
/** Entries read per `XREAD`. */
const BATCH = 500;
/** The blocking read wakes this often to pick up newly led queues and due starts. */
const BLOCK_MS = 500;
/** While behind the stream head by more than this, the bridge says so in the log (every {@link LAG_LOG_MS}). */
const LAG_WARN_MS = 5000;
const LAG_LOG_MS = 30_000;

/** What the bridge writes to and how it is bounded. */
export interface QueueEventsBridgeOptions {
  scripts: JobScripts;
  keys: RedisKeys;
  /** Commands (fails fast while Redis is away). */
  commands: RedisClient;
  /** The queues to bridge, known once the application is built. */
  queues: () => readonly string[];
  retentionMs: number;
  maxEventsPerJob: number;
  maxEventBytes: number;
  leaseMs?: number;
  /** How long to wait after each read before the next one (default: a {@link BusyStreamPause} per read loop). */
  busyPause?: Pick<BusyStreamPause, 'afterRead'>;
}

/**
 * The reading of the led queues whose BullMQ events streams one `XREAD` can cover: all of them on
 * one Redis server; on Redis Cluster, which refuses a command over keys of different slots, those
 * of one hash tag (the prefix's, or each queue's own under a prefix without one).
 */
interface ReadLoop {
  /** Its blocking connection (a blocking read holds its connection until it returns). */
  blocking?: RedisClient;
  reading?: Promise<void>;
  busyPause: Pick<BusyStreamPause, 'afterRead'>;
}

interface LedQueue {
  queue: string;
  /** Id of the last entry applied. */
  position: string;
  /**
   * How many entries BullMQ had added to the stream up to and including `position` (Redis counts
   * `entries-added`): trimming removes the oldest entries, so entries were lost unread when more
   * than this many are gone.
   */
  count: number;
  /** `active` entries whose writer is not decided yet, by job id. */
  pending: Map<string, { entryId: string; count: number; ms: number; seenAt: number; create: Promise<NewJobMeta | undefined> }>;
  /**
   * The current attempt of each job whose entries are being applied, with who writes it as learnt
   * from the scripts' replies: `module` (the module's own worker: the job's entries need no Redis
   * call) or `bridge` (a foreign worker's, written here). A new record per attempt: a reply about
   * an earlier attempt, which comes after the next `active` was read, finds another record and
   * changes nothing.
   */
  writers: Map<string, { writer?: 'module' | 'bridge' }>;
  /**
   * Progress entries of the batch being applied not sent yet, by job (entry id, then data, per
   * entry): a job's consecutive progress entries go out in one script call.
   */
  progress: Map<string, string[]>;
  /** Batches sent whose replies are not all in yet, oldest first; each records the position once its replies are in. */
  inFlight: Array<Promise<void>>;
  /** Set when a sent batch failed: reading goes back to where that batch began. */
  rewind?: Rewind;
  /** The position (and count) up to which every batch's replies are in, to be recorded. */
  applied?: string;
  /** What was last recorded in Redis. */
  recorded?: string;
  /** Pending write of `applied` (see {@link POSITION_EVERY_MS}). */
  recordTimer?: NodeJS.Timeout;
  status: QueueBridgeStatus;
}

type Fields = Record<string, string>;

/** Where a batch began, to read and apply it again after a failure. */
// `writers` is not part of it: a batch read again gives its attempts new records, and the scripts
// answer for them as they did (applying is idempotent).
type Rewind = Pick<LedQueue, 'position' | 'count' | 'pending'>;

/** Batches in flight per queue before reading waits for the oldest one's replies. */
const MAX_IN_FLIGHT = 4;
/**
 * The position is recorded at most this often, not after every batch: at a steady rate a batch is
 * often one entry, and a write per batch would double the bridge's Redis calls. A takeover reads
 * what came after the last record again, which changes nothing (every entry is applied once per job).
 */
const POSITION_EVERY_MS = 100;

/**
 * Adds a script call of a batch to `sent`, with its rejection handled at once: the batch awaits
 * its calls only after the previous batch's, and an unhandled rejection meanwhile ends the process.
 */
function send(sent: Array<Promise<void>>, call: Promise<void>): void {
  call.catch(() => undefined);
  sent.push(call);
}

/**
 * The process that holds a foreign-worker bridge lease, from the lease key's value
 * (`RedisKeys.bridgeLease(queue)`, `<host>:<pid>:<uuid>`): which instance bridges a queue right now,
 * for an operator or a test. Undefined for a value of another shape.
 */
export function bridgeLeaseHolder(lease: string): { host: string; pid: number } | undefined {
  const match = /^(.*):(\d+):[0-9a-f-]{36}$/.exec(lease);
  return match ? { host: match[1], pid: Number(match[2]) } : undefined;
}

function fieldsOf(raw: string[]): Fields {
  const fields: Fields = {};
  for (let i = 0; i + 1 < raw.length; i += 2) fields[raw[i]] = raw[i + 1];
  return fields;
}

/** BullMQ stores return values as JSON text; anything else (an `undefined` result) reads as null. */
function jsonOrNull(text: string | undefined): string {
  if (text === undefined || text === '') return 'null';
  try {
    JSON.parse(text);
    return text;
  } catch {
    return 'null';
  }
}

/**
 * Bridges jobs that workers without this module run (a BullMQ worker in another language, an old
 * service with a plain `Worker`) from BullMQ's own queue events stream (`<prefix>:<queue>:events`)
 * into the jobs' streams: `started` on `active`, one `progress` per progress entry, the terminal
 * event on `completed` or (final) `failed`.
 *
 * One process at a time reads a queue's stream: it holds the queue's lease in Redis and renews it;
 * when it dies the lease expires and another process takes over from the position it recorded.
 * One blocking read covers the streams of every queue it leads; on Redis Cluster, which refuses a
 * read over keys of different slots, one per hash tag (queues with tags of their own under a
 * prefix without one), each on a connection of its own.
 * Every entry is applied to its job by one script that remembers the last entry applied to that
 * job, so an entry read twice is appended once. Attempts that the module's own workers run are
 * theirs to write: the script leaves an attempt alone whose `started` the module wrote at or after
 * the `active` entry. Since that `started` comes a moment after BullMQ's `active`, an `active` is
 * applied when the next entry of its job arrives, or {@link START_GRACE_MS} later.
 *
 * BullMQ trims its events stream (about 10,000 entries). When the bridge finds entries it had not
 * read gone, every job that was running or finished meanwhile gets a `gap` event (and, when BullMQ
 * finished it, its terminal event from BullMQ's state), instead of silently missing progress.
 */
export class QueueEventsBridge {
  private readonly logger = new Logger('JobQueueBridge');
  /** Unique per process; names the holder in the lease (see {@link bridgeLeaseHolder}). */
  private readonly token = `${hostname()}:${process.pid}:${randomUUID()}`;
  private readonly leaseMs: number;
  private readonly led = new Map<string, LedQueue>();
  private readonly statuses = new Map<string, QueueBridgeStatus>();
  /** The read loops, by the slot group of their queues' streams (see {@link groupOf}). */
  private readonly loops = new Map<string, ReadLoop>();
  private leaseTimer?: NodeJS.Timeout;
  private stopped = false;
  private lastLagLog = 0;
  /** Set while a renewal round runs: rounds never overlap (a slow takeover must not start twice). */
  private renewing = false;

  constructor(private readonly options: QueueEventsBridgeOptions) {
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  }

  /** The read loop of `queue`: one for every queue on one Redis server, one per hash tag on Redis Cluster. */
  private groupOf(queue: string): string {
    return this.options.commands.isCluster ? hashTagOf(this.options.keys.bullEvents(queue)) : '';
  }

  /** Starts competing for the leases of the bridged queues. */
  start(): void {
    for (const queue of this.options.queues()) {
      this.statuses.set(queue, { queue, leading: false, lagMs: 0, lagEntries: 0, takeovers: 0, gaps: 0, reads: 0, entriesRead: 0 });
    }
    if (!this.statuses.size) return;
    void this.renewLeases();
    this.leaseTimer = setInterval(() => void this.renewLeases(), Math.max(100, Math.floor(this.leaseMs / 3)));
  }

  /** Stops reading and hands the leases back, so that another process takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.leaseTimer);
    for (const loop of this.loops.values()) loop.blocking?.disconnect();
    await Promise.all([...this.loops.values()].map((loop) => loop.reading?.catch(() => undefined)));
    await Promise.allSettled([...this.led.values()].flatMap((led) => led.inFlight));
    for (const led of this.led.values()) clearTimeout(led.recordTimer);
    await Promise.all([...this.led.values()].map((led) => this.recordPosition(led)));
    await Promise.all(
      [...this.led.keys()].map((queue) =>
        this.options.scripts.bridgeLease(this.options.keys.bridgeLease(queue), this.token, 0).catch(() => undefined),
      ),
    );
    this.led.clear();
  }

  /** Each bridged queue as this process sees it. */
  status(): QueueBridgeStatus[] {
    return [...this.statuses.values()].map((status) => ({ ...status }));
  }

  private async renewLeases(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      await this.renewEachLease();
    } finally {
      this.renewing = false;
    }
  }

  private async renewEachLease(): Promise<void> {
    for (const queue of this.statuses.keys()) {
      if (this.stopped) return;
      let lease: 'renewed' | 'taken' | 'held';
      try {
        lease = await this.options.scripts.bridgeLease(this.options.keys.bridgeLease(queue), this.token, this.leaseMs);
      } catch {
        continue; // Redis is away: the lease may lapse, another process then takes over (entries are applied once either way)
      }
      if (lease === 'held' && this.led.has(queue)) {
        this.led.delete(queue);
        this.statuses.get(queue)!.leading = false;
        this.logger.warn(`Lost the bridge lease of queue "${queue}" to another process`);
      } else if (lease !== 'held' && !this.led.has(queue)) {
        await this.lead(queue).catch((error: Error) => this.logger.warn(`Could not start bridging queue "${queue}": ${error.message}`));
      }
    }
  }

  /** Starts reading `queue` from its recorded position (from the stream head the first time). */
  private async lead(queue: string): Promise<void> {
    const { commands, keys } = this.options;
    const recorded = await commands.get(keys.bridgePosition(queue));
    const status = this.statuses.get(queue)!;
    let position: string;
    let count: number;
    if (recorded === null) {
      const head = await this.streamInfo(queue);
      [position, count] = [head.lastId, head.added];
      this.logger.log(`Bridging queue "${queue}" from BullMQ's events stream, from its head (${position})`);
    } else {
      const [id, counted] = recorded.split(' ');
      [position, count] = [id, Number(counted) || 0];
      status.takeovers++;
      this.logger.log(`Took over the bridge of queue "${queue}" at entry ${position}`);
    }
    const led: LedQueue = {
      queue,
      position,
      count,
      pending: new Map(),
      writers: new Map(),
      progress: new Map(),
      inFlight: [],
      status,
    };
    await this.recoverGap(led);
    if (this.stopped) return;
    status.leading = true;
    status.position = led.position;
    this.led.set(queue, led);
    const group = this.groupOf(queue);
    const loop = this.loops.get(group) ?? { busyPause: this.options.busyPause ?? new BusyStreamPause() };
    this.loops.set(group, loop);
    loop.reading ??= this.readLoop(group, loop).finally(() => (loop.reading = undefined));
  }

  /** The stream's last id, entries ever added, current length and first entry (all zero without a stream). */
  private async streamInfo(queue: string): Promise<{ lastId: string; added: number; length: number; firstId?: string }> {
    let info: unknown[];
    try {
      info = (await this.options.commands.xinfo('STREAM', this.options.keys.bullEvents(queue))) as unknown[];
    } catch {
      return { lastId: '0-0', added: 0, length: 0 }; // no stream yet: every entry is new
    }
    const field = (name: string): unknown => info[info.indexOf(name) + 1];
    const first = field('first-entry') as [string, string[]] | null;
    return {
      lastId: String(field('last-generated-id')),
      // `entries-added` exists from Redis 7 on; without it trimming cannot be told apart, and no gap is reported.
      added: info.includes('entries-added') ? Number(field('entries-added')) : 0,
      length: Number(field('length')),
      firstId: first?.[0],
    };
  }

  /** The led queues of read loop `group`. */
  private ledOf(group: string): LedQueue[] {
    return [...this.led.values()].filter((led) => this.groupOf(led.queue) === group);
  }

  /** Reads the streams of the led queues of `group` until none is left (or the bridge stops). */
  private async readLoop(group: string, loop: ReadLoop): Promise<void> {
    if (!loop.blocking) {
      loop.blocking = duplicateClient(this.options.commands, {
        connectionName: `${this.options.keys.prefix}:bridge`,
        enableOfflineQueue: true,
        maxRetriesPerRequest: null,
        commandTimeout: undefined,
      });
      loop.blocking.on('error', () => undefined); // the command connection's logger reports outages
    }
    const blocking = loop.blocking;
    let pauseMs = 0;
    while (!this.stopped && this.ledOf(group).length) {
      // The entries of the last read are sent: while the streams are busy, let the next batch grow.
      if (pauseMs) {
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
        if (this.stopped || !this.ledOf(group).length) break; // stopped, or the last lease lost, meanwhile
      }
      const queues = this.ledOf(group);
      let reply: Array<[string, Array<[string, string[]]>]> | null;
      try {
        reply = (await blocking.xread(
          'COUNT',
          BATCH,
          'BLOCK',
          BLOCK_MS,
          'STREAMS',
          ...queues.map((led) => this.options.keys.bullEvents(led.queue)),
          ...queues.map((led) => led.position),
        )) as Array<[string, Array<[string, string[]]>]> | null;
      } catch (error) {
        if (this.stopped) return;
        this.logger.warn(`Reading BullMQ's events failed (${(error as Error).message}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      pauseMs = loop.busyPause.afterRead(reply?.reduce((entries, [, stream]) => entries + stream.length, 0) ?? 0, performance.now());
      for (const led of queues) {
        if (!this.led.has(led.queue)) continue; // lost meanwhile
        if (led.rewind) {
          // A batch failed: what was read after it is read again, from where it began (applying is idempotent).
          await Promise.allSettled(led.inFlight);
          Object.assign(led, led.rewind, { rewind: undefined });
          await new Promise((resolve) => setTimeout(resolve, 500));
          continue;
        }
        const entries = reply?.find(([key]) => key === this.options.keys.bullEvents(led.queue))?.[1] ?? [];
        if (entries.length) {
          led.status.reads++;
          led.status.entriesRead += entries.length;
        }
        try {
          await this.applyBatch(led, entries);
        } catch (error) {
          // Only the gap check can fail here (a sent batch that fails rewinds the reading instead).
          this.logger.warn(`Checking queue "${led.queue}" for trimmed entries failed (${(error as Error).message}); retrying`);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
    }
  }

  /**
   * Applies a batch: every entry's script goes out at once, in the batch's order, on one connection
   * (Redis runs them in that order, so each job's events stay in order). The next read does not
   * wait for the replies: they are read in the background, batch after batch, and each batch whose
   * replies are all in records the position. A failed batch makes reading go back to where it began.
   */
  private async applyBatch(led: LedQueue, entries: Array<[string, string[]]>): Promise<void> {
    const before: Rewind = { position: led.position, count: led.count, pending: new Map(led.pending) };
    const sent: Array<Promise<void>> = [];
    try {
      for (const [entryId, raw] of entries) {
        await this.apply(led, entryId, led.count + 1, fieldsOf(raw), sent);
        led.position = entryId;
        led.count++;
      }
      for (const jobId of [...led.progress.keys()]) this.flushProgress(led, jobId, sent);
      // Starts nobody followed up in time are decided now.
      const now = Date.now();
      for (const [jobId, pending] of led.pending) if (now - pending.seenAt >= START_GRACE_MS) await this.resolveStart(led, jobId, sent);
    } catch (error) {
      led.progress.clear(); // read again with the batch
      await Promise.allSettled(sent);
      this.failed(led, before, error);
      return;
    }
    // The recorded position stays before the oldest undecided `active`, so a takeover reads it again.
    let safe = { id: led.position, count: led.count };
    for (const pending of led.pending.values()) {
      if (pending.count - 1 < safe.count) safe = { id: streamIdBefore(pending.entryId), count: pending.count - 1 };
    }
    const previous = led.inFlight.at(-1);
    const settled = (async (): Promise<void> => {
      await previous;
      try {
        await Promise.all(sent);
        if (led.rewind) return; // an earlier batch failed: this one is read again too
        led.applied = `${safe.id} ${safe.count}`;
        led.status.position = safe.id;
        led.recordTimer ??= setTimeout(() => void this.recordPosition(led), POSITION_EVERY_MS);
      } catch (error) {
        await Promise.allSettled(sent);
        this.failed(led, before, error);
      }
    })();
    led.inFlight.push(settled);
    void settled.finally(() => led.inFlight.splice(led.inFlight.indexOf(settled), 1));
    if (led.inFlight.length > MAX_IN_FLIGHT) await led.inFlight[0];
    if (entries.length < BATCH) {
      this.updateLag(led);
      return;
    }
    // A full batch: the stream may be outrunning the bridge, and trimming what it has not read.
    await Promise.all(led.inFlight);
    const stream = await this.recoverGap(led);
    this.updateLag(led, stream.added);
  }

  /**
   * Records how far `led` is applied, while this process holds the lease; a process that finds
   * it lost stops reading the queue.
   */
  private async recordPosition(led: LedQueue): Promise<void> {
    led.recordTimer = undefined;
    const position = led.applied;
    if (position === undefined || position === led.recorded || this.led.get(led.queue) !== led) return;
    const { scripts, keys } = this.options;
    let held: boolean;
    try {
      held = await scripts.bridgePosition(keys.bridgeLease(led.queue), keys.bridgePosition(led.queue), this.token, position);
    } catch {
      // Redis away: the next settled batch tries again (a takeover meanwhile reads a little more again).
      return;
    }
    if (held) {
      led.recorded = position;
    } else if (this.led.get(led.queue) === led) {
      this.led.delete(led.queue);
      led.status.leading = false;
    }
  }

  /** Makes reading go back to where the earliest failed batch began. */
  private failed(led: LedQueue, before: Rewind, error: unknown): void {
    if (led.rewind && led.rewind.count <= before.count) return;
    led.rewind = before;
    this.logger.warn(`Bridging queue "${led.queue}" failed (${(error as Error).message}); reading it again from ${before.position}`);
  }

  /** Sends what one entry means for its job (its reply is handled when it comes, in `sent`). */
  private async apply(led: LedQueue, entryId: string, count: number, fields: Fields, sent: Array<Promise<void>>): Promise<void> {
    const jobId = fields.jobId;
    if (!jobId) return;
    const event = fields.event;
    if (event === 'progress' && !led.pending.has(jobId)) {
      const entry = this.progressEntry(fields.data);
      if (entry.kind === 'event') {
        if (this.writerOf(led, jobId) === 'module') return;
        const buffered = led.progress.get(jobId);
        if (buffered) buffered.push(entryId, entry.data);
        else led.progress.set(jobId, [entryId, entry.data]);
        return;
      }
    }
    // Anything else of this job goes after its buffered progress.
    this.flushProgress(led, jobId, sent);
    if (event === 'active') {
      await this.resolveStart(led, jobId, sent);
      // A new attempt: its writer is decided anew.
      led.writers.set(jobId, {});
      // Name and attempts as BullMQ has them, in case the module has not seen the job (added with plain BullMQ).
      const create = this.newJobMeta(led.queue, jobId);
      create.catch(() => undefined);
      led.pending.set(jobId, { entryId, count, ms: timestampOf(entryId), seenAt: Date.now(), create });
      return;
    }
    let entry: BridgeEntry;
    if (event === 'progress') entry = this.progressEntry(fields.data);
    else if (event === 'completed') entry = this.completedEntry(fields.returnvalue);
    else if (event === 'failed') entry = this.failedEntry(fields.failedReason);
    // Back to waiting after a failed attempt (BullMQ retries it): the job is queued again.
    else if (event === 'waiting' && fields.prev === 'active') entry = { kind: 'requeue' };
    // Delayed: a retry with a backoff, or a processor's `moveToDelayed`, of an attempt whose `active`
    // was read and that is not the module's own. BullMQ also reports jobs added with a delay, and
    // changed delays, this way: no call for those. (After a takeover, an attempt begun before it is
    // known here once one of its entries was written: until then its delay is not recorded.)
    else if (event === 'delayed') {
      const current = led.writers.get(jobId);
      if (!led.pending.has(jobId) && (!current || current.writer === 'module')) return;
      entry = { kind: 'requeue' };
    } else if (event === 'removed') {
      led.writers.delete(jobId);
      return;
    } else return;
    await this.resolveStart(led, jobId, sent);
    const ended = entry.kind === 'terminal';
    const writer = this.writerOf(led, jobId);
    if (ended || entry.kind === 'requeue') led.writers.delete(jobId); // the attempt is over
    if (writer === 'module') return;
    const learn = entry.kind === 'event' || entry.kind === 'gap' ? this.learner(led, jobId) : undefined;
    send(
      sent,
      this.applyToJob(led.queue, jobId, entryId, entry).then((reply) => learn?.(reply)),
    );
  }

  /** Who writes `jobId`'s current attempt, as far as known here. */
  private writerOf(led: LedQueue, jobId: string): 'module' | 'bridge' | undefined {
    return led.writers.get(jobId)?.writer;
  }

  /**
   * Learns from a script's reply who writes `jobId`'s current attempt (one whose `active` came
   * before this process led gets its record here): a reply that comes after the attempt ended or
   * the job's next `active` was read finds another record, or none, and changes nothing.
   */
  private learner(led: LedQueue, jobId: string): (reply: BridgeEntryReply) => void {
    let record = led.writers.get(jobId);
    if (!record) led.writers.set(jobId, (record = {}));
    return (reply) => {
      if (led.writers.get(jobId) !== record) return;
      if (reply === 'module') record.writer = 'module';
      else if (reply === 'ok' || reply === 'dup') record.writer = 'bridge';
    };
  }

  /** Sends the job's buffered progress entries, if any, in one script call. */
  private flushProgress(led: LedQueue, jobId: string, sent: Array<Promise<void>>): void {
    const entries = led.progress.get(jobId);
    if (!entries) return;
    led.progress.delete(jobId);
    if (this.writerOf(led, jobId) === 'module') return;
    const { scripts, keys, maxEventsPerJob } = this.options;
    const learn = this.learner(led, jobId);
    send(sent, scripts.bridgeProgress(keys.meta(led.queue, jobId), keys.events(led.queue, jobId), maxEventsPerJob, entries).then(learn));
  }

  private progressEntry(data: string | undefined): BridgeEntry {
    const json = data === undefined || data === '' ? 'null' : data;
    if (Buffer.byteLength(json) > this.options.maxEventBytes) {
      const reason = `a progress update was not bridged: ${Buffer.byteLength(json)} bytes, over maxEventBytes (${this.options.maxEventBytes})`;
      return { kind: 'gap', data: JSON.stringify({ reason }) };
    }
    return { kind: 'event', type: 'progress', data: json };
  }

  private completedEntry(returnvalue: string | undefined): BridgeEntry {
    const result = jsonOrNull(returnvalue);
    return { kind: 'terminal', state: 'completed', data: `{"result":${result}}`, field: 'result', value: result };
  }

  private failedEntry(reason: string | undefined): BridgeEntry {
    const error = JSON.stringify({ message: reason ?? '' });
    return { kind: 'terminal', state: 'failed', data: `{"error":${error}}`, field: 'error', value: error };
  }

  /** Sends the job's undecided `active`, if any, as its `started` (unless the module's own worker claimed the attempt). */
  private async resolveStart(led: LedQueue, jobId: string, sent: Array<Promise<void>>): Promise<void> {
    const pending = led.pending.get(jobId);
    if (!pending) return;
    led.pending.delete(jobId);
    // A lookup that failed (Redis away) is made again: a rewound batch must not fail on it forever.
    const create = await pending.create.catch(() => this.newJobMeta(led.queue, jobId));
    const learn = this.learner(led, jobId);
    send(sent, this.applyToJob(led.queue, jobId, pending.entryId, { kind: 'start', activeMs: pending.ms }, create).then(learn));
  }

  /** Name, attempts and creation time of a job as BullMQ has them, for a job the module has not seen. */
  private async newJobMeta(queue: string, jobId: string): Promise<NewJobMeta | undefined> {
    const [name, opts, timestamp] = await this.options.commands.hmget(this.options.keys.bullJob(queue, jobId), 'name', 'opts', 'timestamp');
    if (name === null) return undefined;
    return { name, maxAttempts: attemptsOf(opts), createdAt: Number(timestamp) || Date.now() };
  }

  private applyToJob(queue: string, jobId: string, entryId: string, entry: BridgeEntry, create?: NewJobMeta): Promise<BridgeEntryReply> {
    const { scripts, keys, retentionMs, maxEventsPerJob } = this.options;
    return scripts.bridgeEntry(
      keys.meta(queue, jobId),
      keys.events(queue, jobId),
      entryId,
      entry,
      { now: Date.now(), retentionMs, maxEvents: maxEventsPerJob },
      create,
    );
  }

  /**
   * Records how far behind the stream head the bridge is after a read. A read that returned less
   * than a full batch reached the head: nothing is left. After a full batch it is still behind: by
   * the entries added after its position (`added`, Redis' count of entries ever added to the
   * stream; before Redis 7, which has no such count, by at least the next batch), and by the age of
   * the last entry it applied.
   */
  private updateLag(led: LedQueue, added?: number): void {
    const now = Date.now();
    if (added === undefined) {
      led.status.lagMs = 0;
      led.status.lagEntries = 0;
    } else {
      led.status.lagEntries = added > 0 ? Math.max(0, added - led.count) : BATCH;
      // A full batch that ended at the head left nothing behind.
      led.status.lagMs = led.status.lagEntries ? Math.max(0, now - timestampOf(led.position)) : 0;
    }
    if (led.status.lagMs > LAG_WARN_MS && now - this.lastLagLog > LAG_LOG_MS) {
      this.lastLagLog = now;
      this.logger.warn(`The bridge of queue "${led.queue}" is ${led.status.lagMs} ms behind BullMQ's events stream`);
    }
  }

  /**
   * When entries after the position were trimmed, marks every job that ran or finished meanwhile
   * with a `gap` event: running jobs (BullMQ's active list) get their attempt started if the lost
   * entries held its `active`, finished ones also their terminal event from BullMQ's state.
   * Returns what it read of the stream (`added`: entries ever added, 0 before Redis 7).
   */
  private async recoverGap(led: LedQueue): Promise<{ added: number }> {
    const { commands, keys } = this.options;
    const stream = await this.streamInfo(led.queue);
    const trimmed = stream.added - stream.length;
    if (!stream.firstId || trimmed <= led.count) return stream;
    const from = led.position;
    // Recovery writes as if at the last lost entry: later entries still apply, earlier ones do not.
    const lostUpTo = streamIdBefore(stream.firstId);
    led.status.gaps++;
    const reason = `BullMQ trimmed ${trimmed - led.count} entries of its events stream of queue "${led.queue}" after ${from} before the bridge read them: progress of this job may be missing`;
    const gap = JSON.stringify({ reason });
    const active = await commands.lrange(keys.bullActive(led.queue), 0, -1);
    const since = timestampOf(from);
    const [completed, failed] = await Promise.all([
      commands.zrangebyscore(keys.bullFinished(led.queue, 'completed'), since, '+inf'),
      commands.zrangebyscore(keys.bullFinished(led.queue, 'failed'), since, '+inf'),
    ]);
    // Only what happened before the first entry still there can be lost: later entries are read as usual.
    const firstMs = timestampOf(stream.firstId);
    let marked = 0;
    for (const jobId of new Set([...active, ...completed, ...failed])) {
      const [processedOn, finishedOn, returnvalue, failedReason] = await commands.hmget(
        keys.bullJob(led.queue, jobId),
        'processedOn',
        'finishedOn',
        'returnvalue',
        'failedReason',
      );
      if (Number(processedOn) > firstMs) continue;
      const create = await this.newJobMeta(led.queue, jobId);
      if (!create) continue;
      const start = await this.applyToJob(led.queue, jobId, lostUpTo, { kind: 'start', activeMs: Number(processedOn) || since }, create);
      // The module's own workers wrote their attempts whole; finished or unknown jobs have nothing to add.
      if (start !== 'ok' && start !== 'dup') continue;
      marked++;
      await this.applyToJob(led.queue, jobId, '', { kind: 'gap', data: gap });
      if (!finishedOn || Number(finishedOn) > firstMs) continue; // its terminal entry is still there
      const terminal = completed.includes(jobId)
        ? this.completedEntry(returnvalue ?? undefined)
        : this.failedEntry(failedReason ?? undefined);
      await this.applyToJob(led.queue, jobId, '', terminal);
    }
    // Read on from the first entry still there; the count now includes the lost ones.
    if (compareStreamIds(lostUpTo, led.position) > 0) led.position = lostUpTo;
    led.count = trimmed;
    this.logger.warn(`${reason.replace(': progress of this job may be missing', '')}; ${marked} job(s) marked with a gap event`);
    return stream;
  }
}
