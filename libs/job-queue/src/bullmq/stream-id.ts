import { InvalidCursorError } from '../errors/invalid-cursor.error.js';
import { START_CURSOR } from '../job-queue.js';

const STREAM_ID = /^([0-9]{1,15})-([0-9]{1,15})$/;

/** Checks a client cursor: the start cursor or a Redis Stream id. */
export function assertCursor(cursor: string): void {
  if (cursor !== START_CURSOR && !STREAM_ID.test(cursor)) throw new InvalidCursorError(cursor);
}

/** Orders two stream ids (or the start cursor, which is before every id). */
export function compareStreamIds(a: string, b: string): number {
  if (a === b) return 0;
  const [am, as] = a === START_CURSOR ? [0, -1] : a.split('-').map(Number);
  const [bm, bs] = b === START_CURSOR ? [0, -1] : b.split('-').map(Number);
  return am - bm || as - bs;
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
