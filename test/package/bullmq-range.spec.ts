import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Config } from 'jest';
import baseConfig from '../../jest.config.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The suites that run BullMQ's `Queue`, `Worker` and `QueueEvents`, its scripts and `@nestjs/bullmq` in one process each. */
const SUITES = [
  'libs/job-queue/test/processor-bridge.spec.ts',
  'libs/job-queue/test/job-streams-backend.spec.ts',
  'libs/job-queue/test/cancel-keeps-bullmq-job.spec.ts',
  'libs/job-queue/test/bullmq-job-queue.spec.ts',
  'libs/job-queue/test/lifecycle-in-bullmq-scripts.spec.ts',
  'libs/job-queue/test/plain-worker-backend.spec.ts',
];
const CHECK = 'test/package/bullmq-range/loaded-bullmq.ts';
const RESOLVER = 'test/package/bullmq-range/resolver.mjs';

/** The lowest version of a `^x.y.z` range: the only form of range this test reads. */
function lowestOf(range: string): string {
  const match = /^\^(\d+\.\d+\.\d+)$/.exec(range.trim());
  if (!match) throw new Error(`bullmq's peer range "${range}" is not of the form ^x.y.z: teach this test its lowest version`);
  return match[1];
}

/** Runs a command; resolves with its exit code and everything it printed. */
function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, output }));
  });
}

/** The part of Jest's `--json` output read here. */
interface JestResults {
  success: boolean;
  numTotalTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numRuntimeErrorTestSuites: number;
  testResults: Array<{
    name: string;
    status: string;
    message: string;
    assertionResults: Array<{ title: string; fullName: string; status: string; failureMessages: string[] }>;
  }>;
}

/**
 * The suites that exercise BullMQ ({@link SUITES}: the processor bridge, the composing backend,
 * cancel, the contract suite on the bullmq backend, the moves that start and end a job's stream,
 * a plain `Worker` on the backend), run again on the lowest `bullmq` the
 * library's peer range names (its lower bound, read from `libs/job-queue/package.json`). That
 * version is installed into a folder outside the repository, and a child Jest runs the suites with
 * `bullmq` mapped to it: the tests, `@nestjs/bullmq` and the library all load that copy, and the
 * library composes that version's scripts. The child's resolver ({@link RESOLVER}) refuses the
 * repository's own `node_modules/bullmq`, so an import the mapping missed fails the run instead of
 * loading a second copy of BullMQ's classes. ioredis is the repository's, linked into the folder:
 * one copy serves the library, the tests and BullMQ. A first test in each suite ({@link CHECK})
 * states the version that suite loaded; this test reads the child's JSON report and requires each
 * suite to have passed that test and every other one, none skipped. The child run takes about a
 * minute on 2 cores.
 *
 * The newest `bullmq` is the one the repository installs (its `package.json` pins the registry's
 * newest 6.x), so the rest of the suite covers the top of the range; the packed-package test
 * installs the registry's newest peers as a user would.
 */
describe('the bullmq suites on the lowest bullmq of the peer range', () => {
  const peerRange = (
    JSON.parse(readFileSync(join(ROOT, 'libs/job-queue/package.json'), 'utf8')) as { peerDependencies: Record<string, string> }
  ).peerDependencies.bullmq;
  const lowest = lowestOf(peerRange);
  let dir: string;
  let results: JestResults | undefined;
  let childOutput = '';

  beforeAll(async () => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'jq-bullmq-range-')));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'bullmq-range', private: true, dependencies: { bullmq: lowest } }));
    const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], dir, process.env);
    if (install.code !== 0) throw new Error(`npm install of bullmq@${lowest} failed:\n${install.output}`);
    // bullmq's ioredis peer is optional (not installed with it); it needs one, in Jest and in its sandbox child processes.
    symlinkSync(join(ROOT, 'node_modules/ioredis'), join(dir, 'node_modules/ioredis'), 'dir');

    const bullmq = join(dir, 'node_modules/bullmq');
    const config: Config = {
      ...baseConfig,
      rootDir: ROOT,
      moduleNameMapper: { '^bullmq$': bullmq, '^bullmq/(.*)$': `${bullmq}/$1`, ...baseConfig.moduleNameMapper },
      resolver: `<rootDir>/${RESOLVER}`,
      setupFilesAfterEnv: [...(baseConfig.setupFilesAfterEnv ?? []), `<rootDir>/${CHECK}`],
    };
    writeFileSync(join(dir, 'jest.config.json'), JSON.stringify(config));
    const outputFile = join(dir, 'jest-results.json');
    const child = await run(
      process.execPath,
      [
        '--experimental-vm-modules',
        join(ROOT, 'node_modules/jest/bin/jest.js'),
        ...['--config', join(dir, 'jest.config.json'), '--runInBand', '--ci', '--json', '--outputFile', outputFile],
        ...['--runTestsByPath', ...SUITES],
      ],
      ROOT,
      { ...process.env, BULLMQ_RANGE_VERSION: lowest, BULLMQ_RANGE_DIR: dir },
    );
    childOutput = child.output;
    if (existsSync(outputFile)) results = JSON.parse(readFileSync(outputFile, 'utf8')) as JestResults;
  }, 420_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Jest's report, or the child's own words when it wrote none (a config error, a crash). */
  function report(): JestResults {
    if (!results) throw new Error(`The child Jest wrote no report:\n${childOutput}`);
    return results;
  }

  it(`installed bullmq ${lowest} (the lower bound of ${peerRange}) outside the repository`, () => {
    const installed = JSON.parse(readFileSync(join(dir, 'node_modules/bullmq/package.json'), 'utf8')) as { version: string };
    expect(installed.version).toBe(lowest);
    expect(relative(ROOT, dir).startsWith(`..${sep}`)).toBe(true);
  });

  it('ran every bullmq suite to the end, each test passed, none skipped', () => {
    const { testResults, ...totals } = report();
    const failures = testResults.flatMap((suite) => {
      const file = relative(ROOT, suite.name);
      const tests = suite.assertionResults.filter((test) => test.status !== 'passed');
      // A suite that failed outside its tests (an import, a hook) says why in its message.
      if (suite.status !== 'passed' && tests.length === 0) return [`${file}: ${suite.status}\n${suite.message}`];
      return tests.map((test) => `${file} > ${test.fullName}: ${test.status}\n${test.failureMessages.join('\n')}`);
    });
    expect(failures).toEqual([]);
    expect(testResults.map((suite) => relative(ROOT, suite.name)).sort()).toEqual([...SUITES].sort());
    expect(totals).toMatchObject({ success: true, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0, numRuntimeErrorTestSuites: 0 });
    expect(totals.numTotalTests).toBeGreaterThan(SUITES.length * 2);
  });

  it(`loaded bullmq ${lowest} in each suite: its tests, @nestjs/bullmq and the library`, () => {
    const checked = report().testResults.map((suite) => {
      const check = suite.assertionResults.find((test) => test.title.startsWith('loads bullmq '));
      return [relative(ROOT, suite.name), check && `${check.title}: ${check.status}`];
    });
    const expected = `loads bullmq ${lowest} from the installed copy, in the tests, @nestjs/bullmq and the library alike: passed`;
    expect(Object.fromEntries(checked)).toEqual(Object.fromEntries(SUITES.map((suite) => [suite, expected])));
  });
});
