/**
 * Calls `read` until `done` holds of its value or `timeoutMs` passes, every `everyMs`; returns
 * the last value either way, so that the caller's assertion shows what was seen. For states a
 * process reaches on its own schedule (a reconnect, a lease, a counter), where no event can be awaited.
 */
export async function pollUntil<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
