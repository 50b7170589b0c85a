/**
 * Default of `redis.failoverTimeoutMs` (`REDIS_FAILOVER_TIMEOUT_MS`): Redis' default
 * `cluster-node-timeout` (15 s) plus a few seconds for the promotion of a replica.
 */
export const DEFAULT_FAILOVER_TIMEOUT_MS = 20_000;

const MIN_MS = 1000;
const MAX_MS = 600_000;

/**
 * What is wrong with `value` as a failover budget, naming the option as `label`, or undefined
 * when it is an integer from 1000 to 600000 (ms).
 */
export function failoverTimeoutProblem(value: unknown, label: string): string | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= MIN_MS && value <= MAX_MS) return undefined;
  const got = typeof value === 'string' ? JSON.stringify(value) : value !== null && typeof value === 'object' ? 'an object' : String(value);
  return `${label} (REDIS_FAILOVER_TIMEOUT_MS) must be an integer from ${MIN_MS} to ${MAX_MS} (got ${got})`;
}
