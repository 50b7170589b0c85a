/** How a client waits between tries. */
export interface BackoffOptions {
  /** First wait, in ms (default 250). */
  initialMs?: number;
  /** Longest wait, in ms (default 10000); a server's `Retry-After` is honoured up to this too. */
  maxMs?: number;
}

/**
 * The wait before try `attempt` (1 for the first retry): exponential with full jitter, so that
 * clients dropped together by one instance do not all come back at the same moment; at least the
 * server's `Retry-After` (seconds or an HTTP date) when it sent one.
 */
export function retryDelayMs(attempt: number, options: BackoffOptions, retryAfter?: string | null, now = Date.now()): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 10_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt - 1, 20));
  const jittered = ceiling / 2 + Math.random() * (ceiling / 2);
  return Math.min(max, Math.max(jittered, retryAfterMs(retryAfter, now)));
}

/** `Retry-After` in ms (0 when absent or unreadable). */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number {
  if (!header) return 0;
  const trimmed = header.trim();
  if (/^[0-9]+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? 0 : Math.max(0, date - now);
}
