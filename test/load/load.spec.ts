import { formatReport, profileFromEnv, runLoad, writeReport } from './load-runner.js';

/**
 * The load test (issue 4, item 2). `npm test` runs the small profile; `npm run test:load --
 * --profile=big` (or `LOAD_PROFILE=big`) a bigger one. See load-runner.ts for what is measured.
 */
const profile = profileFromEnv();

describe(`load: ${profile.builds} builds followed by ${profile.clients} clients over 2 apis and 2 workers`, () => {
  it(
    'delivers every event to every client exactly once and in order, and the apis give their memory back',
    async () => {
      const report = await runLoad(profile, (line) => process.stdout.write(`${line}\n`));
      const path = writeReport(report);
      process.stdout.write(`${formatReport(report)}\n  report: ${path}\n`);

      expect(report.clientErrors).toEqual([]);
      expect({ lost: report.events.lost, duplicated: report.events.duplicated, outOfOrder: report.events.outOfOrder }).toEqual({
        lost: 0,
        duplicated: 0,
        outOfOrder: 0,
      });
      expect(report.events.corrupted).toBe(0);
      expect(report.events.delivered).toBe(profile.rounds * profile.clients * report.eventsPerBuild);
      expect(report.buildsAsExpected).toBe(profile.rounds * profile.builds);
      expect(report.memory.filter((entry) => !entry.ok)).toEqual([]);
      expect(report.failures).toEqual([]);
    },
    profile.rounds * profile.clientTimeoutMs + profile.settleMs + 90_000,
  );
});
