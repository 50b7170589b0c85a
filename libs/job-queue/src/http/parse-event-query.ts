import { InvalidArgumentError } from '../errors/invalid-argument.error.js';
import { MAX_READ_LIMIT, MAX_WAIT_MS } from '../contract/job-queue.js';

/** Query parameters of an events request, as strings (or absent). */
export interface RawEventQuery {
  after?: unknown;
  waitMs?: unknown;
  limit?: unknown;
}

/** Parsed query of an events request. */
export interface EventQuery {
  after?: string;
  waitMs?: number;
  limit?: number;
}

function parseInteger(name: string, raw: unknown, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^[0-9]{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
  }
  return Number(raw);
}

/**
 * Parses `after`, `waitMs` and `limit` from a query string object strictly: digits only, in range,
 * given at most once. Throws {@link InvalidArgumentError} naming the parameter.
 */
export function parseEventQuery(query: RawEventQuery): EventQuery {
  if (query.after !== undefined && (typeof query.after !== 'string' || query.after.length > 200)) {
    throw new InvalidArgumentError('after must be a single event id of at most 200 characters');
  }
  return {
    after: query.after === '' ? undefined : (query.after as string | undefined),
    waitMs: parseInteger('waitMs', query.waitMs, 0, MAX_WAIT_MS),
    limit: parseInteger('limit', query.limit, 1, MAX_READ_LIMIT),
  };
}
