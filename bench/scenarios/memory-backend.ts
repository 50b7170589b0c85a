import { RoleProcess } from '../support/rpc.js';
import type { RunSummary } from '../support/payload.js';
import { median, round } from '../support/stats.js';

export interface MemoryBackendResult {
  events: number;
  /** Median of the runs: one job's events from its handler to a follower in the same process. */
  eventsPerSec: number;
  runs: number[];
  complete: boolean;
}

/** The embedded `memory` backend: handler and follower in one process, no Redis. */
export async function memoryBackend(options: {
  events: number;
  repetitions: number;
  log(line: string): void;
}): Promise<MemoryBackendResult> {
  const role = await RoleProcess.start('library', { backend: 'memory' });
  try {
    const run = (n: number): Promise<RunSummary> => role.call('run', { mode: 'burst', n, timeoutMs: 60_000 });
    await run(Math.round(options.events / 5));
    const runs: RunSummary[] = [];
    for (let rep = 0; rep < options.repetitions; rep++) {
      runs.push(await run(options.events));
      options.log(`  memory backend run ${rep + 1}: ${Math.round(runs[rep].eventsPerSec)} events/s`);
    }
    return {
      events: options.events,
      eventsPerSec: round(median(runs.map((r) => r.eventsPerSec))),
      runs: runs.map((r) => round(r.eventsPerSec)),
      complete: runs.every((r) => r.received === r.sent && r.misordered === 0),
    };
  } finally {
    await role.stop();
  }
}
