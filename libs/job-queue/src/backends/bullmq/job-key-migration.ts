import type { Cluster, Redis } from 'ioredis';
import { InvalidArgumentError } from '../../errors/invalid-argument.error.js';
import { ownKeyPrefix, RedisKeys } from './redis-keys.js';

/** Options of {@link migrateJobKeys}. */
export interface MigrateJobKeysOptions {
  /** The key prefix of the deployment (`redis.prefix`, `JOB_QUEUE_PREFIX`), exactly as its processes were given it. */
  prefix: string;
  /** How many keys each `SCAN` call asks for, and so how many jobs are moved at a time (1..10000, default 500). */
  batch?: number;
}

/** What {@link migrateJobKeys} did. */
export interface MigrateJobKeysSummary {
  /** Jobs whose keys now have the new names (including jobs an interrupted earlier run had copied but not yet removed). */
  jobs: number;
  /**
   * Jobs of the old layout whose new metadata key already held another job (one the new version
   * wrote under the same queue and id): that job was kept as it is, and the old keys deleted.
   */
  skipped: number;
}

const DEFAULT_BATCH = 500;
const MAX_BATCH = 10_000;

/**
 * The key layout before job keys moved next to BullMQ's (kept here, frozen, to find the keys the
 * previous version wrote): 16 shards by FNV-1a of `<queue>:<jobId>`, and the keys
 * `<own>:{<own>:<shard>}:<queue>:<jobId>:meta` and `...:events`, `<own>` being {@link ownKeyPrefix}.
 */
const LEGACY_SHARDS = 16;

function legacyShard(queue: string, jobId: string): number {
  const text = `${queue}:${jobId}`;
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % LEGACY_SHARDS;
}

/** `text` as a literal in a Redis glob pattern (`*`, `?`, `[`, `]` and `\` are special there; braces are not). */
function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`);
}

/** The `SCAN ... MATCH` pattern of the metadata keys the previous version wrote under `prefix` (a superset: each hit is parsed). */
export function legacyMetaPattern(prefix: string): string {
  const own = globLiteral(ownKeyPrefix(prefix));
  return `${own}:{${own}:*}:*:*:meta`;
}

/** One job of the old layout: its queue, id and its old keys. */
interface LegacyJob {
  queue: string;
  jobId: string;
  meta: string;
  events: string;
}

/**
 * The job whose old metadata key is `key`, or undefined when `key` is no such key (the pattern also
 * matches keys with more `:` parts, or with a shard that is not the job's).
 */
export function parseLegacyMetaKey(prefix: string, key: string): LegacyJob | undefined {
  const own = ownKeyPrefix(prefix);
  const head = `${own}:{${own}:`;
  if (!key.startsWith(head) || !key.endsWith(':meta')) return undefined;
  const match = /^(\d{1,2})\}:([^:]+):([^:]+)$/.exec(key.slice(head.length, -':meta'.length));
  if (!match) return undefined;
  const [, shard, queue, jobId] = match;
  if (String(legacyShard(queue, jobId)) !== shard) return undefined;
  return { queue, jobId, meta: key, events: `${key.slice(0, -':meta'.length)}:events` };
}

/** A key's value as `DUMP` gives it and the TTL to `RESTORE` it with (0: none); undefined when the key is gone. */
async function dumpKey(client: Redis | Cluster, key: string): Promise<{ value: Buffer; ttl: number } | undefined> {
  const [value, pttl]: [Buffer | null, number] = await Promise.all([client.dumpBuffer(key), client.pttl(key)]);
  if (value === null || pttl === -2) return undefined;
  // PTTL 0 is a key in its last millisecond; RESTORE would read 0 as "no TTL".
  return { value, ttl: pttl === -1 ? 0 : Math.max(pttl, 1) };
}

function sameHash(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => b[key] === a[key]);
}

/**
 * Moves one job. Every command names one key (the old and the new keys lie in different slots, on
 * Redis Cluster on different nodes), in an order that a rerun can finish whatever this stops
 * halfway: the stream first, the metadata last, and the old keys are deleted only once both are
 * in place, the old metadata the very last (it is what a rerun finds the job by).
 */
async function moveJob(client: Redis | Cluster, keys: RedisKeys, job: LegacyJob): Promise<'moved' | 'skipped' | 'gone'> {
  const [meta, events] = await Promise.all([dumpKey(client, job.meta), dumpKey(client, job.events)]);
  if (!meta) return 'gone'; // expired meanwhile, or a key SCAN returned twice
  const newMeta = keys.meta(job.queue, job.jobId);
  let outcome: 'moved' | 'skipped';
  if (await client.exists(newMeta)) {
    outcome = await existingOutcome(client, job.meta, newMeta);
  } else {
    // No metadata yet, so no job of the new version: a stream there is the copy of an interrupted
    // run, replaced (the new version never writes a job's stream before its metadata).
    if (events) await client.restore(keys.events(job.queue, job.jobId), events.ttl, events.value, 'REPLACE');
    try {
      await client.restore(newMeta, meta.ttl, meta.value);
      outcome = 'moved';
    } catch (error) {
      if (!/BUSYKEY/.test((error as Error).message)) throw error;
      outcome = await existingOutcome(client, job.meta, newMeta); // another run of this function got there first
    }
  }
  await client.del(job.events);
  await client.del(job.meta);
  return outcome;
}

/**
 * A job whose new metadata exists: `moved` when it is a copy of the old one (left by an interrupted
 * run, which copies the stream before the metadata), `skipped` when it is another job.
 */
async function existingOutcome(client: Redis | Cluster, oldMeta: string, newMeta: string): Promise<'moved' | 'skipped'> {
  const [before, after] = await Promise.all([client.hgetall(oldMeta), client.hgetall(newMeta)]);
  return sameHash(before, after) ? 'moved' : 'skipped';
}

/** Moves the jobs of every old metadata key that `node` holds, one `SCAN` reply at a time. */
async function migrateNode(
  node: Redis,
  client: Redis | Cluster,
  prefix: string,
  batch: number,
  summary: MigrateJobKeysSummary,
): Promise<void> {
  const keys = new RedisKeys(prefix);
  const pattern = legacyMetaPattern(prefix);
  let cursor = '0';
  do {
    const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', batch);
    cursor = next;
    const jobs = [...new Set(found)].map((key) => parseLegacyMetaKey(prefix, key)).filter((job) => job !== undefined);
    const outcomes = await Promise.all(jobs.map((job) => moveJob(client, keys, job)));
    for (const outcome of outcomes) {
      if (outcome === 'moved') summary.jobs++;
      else if (outcome === 'skipped') summary.skipped++;
    }
  } while (cursor !== '0');
}

/**
 * Moves the keys of every job that a version up to 0.1.0 wrote under `prefix` to the names the
 * current version reads. Those versions kept a job's metadata hash and events stream under
 * `<p>:{<p>:<shard>}:<queue>:<jobId>:meta` and `:events` (`<p>`: the prefix with its braces
 * percent-encoded, `<shard>`: 0..15); the current version keeps them next to BullMQ's key of the job,
 * as `<prefix>:<queue>:<jobId>:jq-meta` and `:jq-events`, and does not see keys of the old layout:
 * without this move, every job enqueued or ended before the upgrade is unknown (404), and a
 * `@JobHandler` job still waiting in BullMQ fails when a worker takes it instead of running.
 *
 * Run it once, with no process of the deployment running (stop every api and worker of the old
 * version, run this, then start the new version; the changelog has the procedure and a script).
 * A process of either version running meanwhile could write a job's keys between the copy and
 * the delete, and that write would be lost.
 *
 * For each job (found by `SCAN ... MATCH` on the server, or on every master of a Redis Cluster),
 * the stream and then the metadata are copied with `DUMP` and `RESTORE` (same event ids, same
 * remaining TTL: an ended job still expires when its retention runs out), then the old keys are
 * deleted. Every command names one key, so it works on Redis Cluster, where the old and the new
 * keys of a job lie in different slots, often on different masters. A job whose new metadata key already exists is never overwritten:
 * it is a job the new version wrote (counted in `skipped`, and the old keys are deleted, as no
 * version would ever read them again) or the copy of an interrupted run of this function (counted
 * in `jobs`). Running it again is harmless; a run that stopped halfway (an error, a lost
 * connection) is finished by running it again: what it moved stays moved. It rejects with the
 * client's error when Redis fails.
 *
 * @param client an ioredis client for the deployment's Redis server (its database), or an ioredis
 * `Cluster` for its Redis Cluster; it is left open.
 * @returns how many jobs were moved, and how many were skipped because the new version had them already.
 * @throws InvalidArgumentError when `prefix` is not a non-empty string or `batch` not an integer from 1 to 10000.
 * @publicApi
 */
export async function migrateJobKeys(client: Redis | Cluster, options: MigrateJobKeysOptions): Promise<MigrateJobKeysSummary> {
  const { prefix, batch = DEFAULT_BATCH } = options ?? ({} as MigrateJobKeysOptions);
  if (typeof prefix !== 'string' || prefix.length === 0) {
    throw new InvalidArgumentError('prefix must be the non-empty key prefix of the deployment (redis.prefix, JOB_QUEUE_PREFIX)');
  }
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) {
    throw new InvalidArgumentError(`batch must be an integer from 1 to ${MAX_BATCH} (got ${String(batch)})`);
  }
  // Connects a lazy client, and on a cluster fills in its nodes from the slot map.
  await client.ping();
  const nodes = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
  if (nodes.length === 0) throw new Error('The Redis Cluster client knows no master: is it connected to the cluster?');
  const summary: MigrateJobKeysSummary = { jobs: 0, skipped: 0 };
  for (const node of nodes) await migrateNode(node, client, prefix, batch, summary);
  return summary;
}
