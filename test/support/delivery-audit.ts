import { isDeepStrictEqual } from 'node:util';
import type { Redis } from 'ioredis';
import type { WireEvent } from './build-api.js';

/** An event as stored in the job's Redis Stream: the truth a client's copy is checked against. */
export interface StoredEvent {
  id: string;
  type: string;
  data: unknown;
}

/** Reads a whole job event stream straight from Redis (`XRANGE`, in chunks). */
export async function readStoredEvents(redis: Redis, key: string): Promise<StoredEvent[]> {
  const events: StoredEvent[] = [];
  let start = '-';
  for (;;) {
    const entries = (await redis.xrange(key, start, '+', 'COUNT', 10_000)) as Array<[string, string[]]>;
    for (const [id, fields] of entries) {
      const map = new Map<string, string>();
      for (let i = 0; i < fields.length; i += 2) map.set(fields[i], fields[i + 1]);
      events.push({ id, type: map.get('type') ?? '', data: JSON.parse(map.get('data') ?? 'null') });
    }
    if (entries.length < 10_000) return events;
    start = `(${entries[entries.length - 1][0]}`;
  }
}

/** What one client (or many, summed) got compared with what was stored. */
export interface DeliveryCounts {
  /** Events the client should have got: the whole stored stream. */
  expected: number;
  /** Distinct stored events it got. */
  delivered: number;
  /** Stored events it never got. */
  lost: number;
  /** Extra copies of events it had already got. */
  duplicated: number;
  /** Events that came after an event stored later than them. */
  outOfOrder: number;
  /** Events whose id is not in the stored stream, or whose type or data differ from the stored ones. */
  corrupted: number;
}

export const NO_DELIVERY: DeliveryCounts = { expected: 0, delivered: 0, lost: 0, duplicated: 0, outOfOrder: 0, corrupted: 0 };

/** Compares what a client received, in the order received, with the stored stream. */
export function auditDelivery(stored: readonly StoredEvent[], received: readonly WireEvent[]): DeliveryCounts {
  const position = new Map(stored.map((event, index) => [event.id, index]));
  const seen = new Set<number>();
  let duplicated = 0;
  let outOfOrder = 0;
  let corrupted = 0;
  let highest = -1;
  for (const event of received) {
    const index = position.get(event.id);
    if (index === undefined) {
      corrupted++;
      continue;
    }
    if (seen.has(index)) {
      duplicated++;
      continue;
    }
    seen.add(index);
    if (index < highest) outOfOrder++;
    highest = Math.max(highest, index);
    const truth = stored[index];
    if (event.type !== truth.type || !isDeepStrictEqual(event.data, truth.data)) corrupted++;
  }
  return { expected: stored.length, delivered: seen.size, lost: stored.length - seen.size, duplicated, outOfOrder, corrupted };
}

export function addCounts(a: DeliveryCounts, b: DeliveryCounts): DeliveryCounts {
  return {
    expected: a.expected + b.expected,
    delivered: a.delivered + b.delivered,
    lost: a.lost + b.lost,
    duplicated: a.duplicated + b.duplicated,
    outOfOrder: a.outOfOrder + b.outOfOrder,
    corrupted: a.corrupted + b.corrupted,
  };
}
