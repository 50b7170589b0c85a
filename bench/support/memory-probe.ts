/**
 * Preloaded into a process under test (`node --expose-gc --import memory-probe.js app.js`, spawned
 * with an IPC channel): on the message `memory-probe` it runs a full garbage collection and sends
 * back `process.memoryUsage()`, so that the benchmark can read the live heap of an unchanged
 * application from outside. (Not a signal: Nest's shutdown hooks listen to SIGUSR2 and friends.)
 */
process.on('message', (message) => {
  if (message !== 'memory-probe') return;
  (globalThis as { gc?: () => void }).gc?.();
  process.send?.({ memoryProbe: process.memoryUsage() });
});
// The channel must not keep the process alive, nor change how it shuts down.
process.channel?.unref();
