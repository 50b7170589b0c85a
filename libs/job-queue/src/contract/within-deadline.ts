/**
 * `work`, or a rejection with `timedOut()` once `ms` have passed, whichever comes first. The work
 * is not stopped (a Redis command stays queued on its connection until its own timeout), but its
 * caller answers in time: a health probe must say "down" before the prober gives up on it.
 */
export function withinDeadline<T>(work: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms);
    timer.unref();
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
