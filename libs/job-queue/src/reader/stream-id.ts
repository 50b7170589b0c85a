import { InvalidCursorError } from '../errors/invalid-cursor.error.js';
import { START_CURSOR } from '../contract/job-queue.js';

const STREAM_ID = /^([0-9]{1,15})-([0-9]{1,15})$/;

/** Checks a client cursor: the start cursor or a Redis Stream id. */
export function assertCursor(cursor: string): void {
  if (cursor !== START_CURSOR && !STREAM_ID.test(cursor)) throw new InvalidCursorError(cursor);
}

/**
 * Orders two stream ids (or the start cursor, which is before every id). It runs several times per
 * event delivered, so it compares the digits in place instead of splitting into new strings.
 */
export function compareStreamIds(a: string, b: string): number {
  if (a === b) return 0;
  if (a === START_CURSOR) return -1;
  if (b === START_CURSOR) return 1;
  const aDash = a.indexOf('-');
  const bDash = b.indexOf('-');
  return compareDigits(a, 0, aDash, b, 0, bDash) || compareDigits(a, aDash + 1, a.length, b, bDash + 1, b.length);
}

/** Compares the decimal numbers `a[aFrom..aTo)` and `b[bFrom..bTo)` (leading zeros allowed). */
function compareDigits(a: string, aFrom: number, aTo: number, b: string, bFrom: number, bTo: number): number {
  while (aFrom < aTo - 1 && a.charCodeAt(aFrom) === 48) aFrom++;
  while (bFrom < bTo - 1 && b.charCodeAt(bFrom) === 48) bFrom++;
  // Without leading zeros the longer number is the larger; of equal length, digit order decides.
  const longer = aTo - aFrom - (bTo - bFrom);
  if (longer !== 0) return longer;
  for (let i = 0; i < aTo - aFrom; i++) {
    const difference = a.charCodeAt(aFrom + i) - b.charCodeAt(bFrom + i);
    if (difference !== 0) return difference;
  }
  return 0;
}

/** The XRANGE start for "after `cursor`", exclusive. */
export function rangeStartAfter(cursor: string): string {
  return cursor === START_CURSOR ? '-' : `(${cursor}`;
}

/** The XREAD id for "after `cursor`". */
export function readIdAfter(cursor: string): string {
  return cursor === START_CURSOR ? '0-0' : cursor;
}

/** The millisecond part of a stream id: Redis' clock when the event was appended. */
export function timestampOf(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

/** The id right before `id` in stream order (reading after it returns `id` again). */
export function streamIdBefore(id: string): string {
  const [ms, seq] = id.split('-').map(BigInt);
  if (seq > 0n) return `${ms}-${seq - 1n}`;
  return ms > 0n ? `${ms - 1n}-18446744073709551615` : '0-0';
}
