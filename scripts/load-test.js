// Runs the load test (test/load/load.spec.ts) with a profile: `npm run test:load -- --profile=big`
// (or LOAD_PROFILE=big). Numbers of a profile can be overridden the same way, e.g. `--builds=50
// --clients=150 --rounds=1` (or LOAD_BUILDS=50 ...). The report is printed and written to
// .test-tmp/load-report-<profile>.json. Expects `npm run build` to have run (the npm script does it).
import { spawnSync } from 'node:child_process';

const env = { ...process.env };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const match = /^--([a-z][a-z-]*)(?:=(.*))?$/i.exec(args[i]);
  if (!match) {
    console.error(`load-test: unexpected argument ${JSON.stringify(args[i])} (use --profile=small|big, --builds=N, --clients=N, ...)`);
    process.exit(2);
  }
  const value = match[2] ?? args[++i];
  if (value === undefined) {
    console.error(`load-test: --${match[1]} needs a value`);
    process.exit(2);
  }
  // --profile -> LOAD_PROFILE, --tokens-per-step / --tokensPerStep -> LOAD_TOKENS_PER_STEP
  const name = match[1]
    .replace(/-/g, '_')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toUpperCase();
  env[`LOAD_${name}`] = value;
}

const result = spawnSync(
  process.execPath,
  ['--experimental-vm-modules', 'node_modules/jest/bin/jest.js', '--runInBand', 'test/load/load.spec.ts'],
  { stdio: 'inherit', env },
);
process.exit(result.status ?? 1);
