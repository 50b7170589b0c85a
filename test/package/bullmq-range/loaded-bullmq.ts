// Set up before each suite of the run `bullmq-range.spec.ts` starts (its `setupFilesAfterEnv`): adds
// to each suite a first test that says which bullmq that suite really loaded.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { expect, it } from '@jest/globals';
import { installedBullCommands } from '../../../libs/job-queue/src/backends/bullmq/bullmq-commands.js';

/** What the outer test installed: the version, and the folder whose `node_modules` holds it. */
function required(name: 'BULLMQ_RANGE_VERSION' | 'BULLMQ_RANGE_DIR'): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: this file belongs to the run that test/package/bullmq-range.spec.ts starts`);
  return value;
}
const version = required('BULLMQ_RANGE_VERSION');
const installed = join(required('BULLMQ_RANGE_DIR'), 'node_modules', 'bullmq') + sep;

it(`loads bullmq ${version} from the installed copy, in the tests, @nestjs/bullmq and the library alike`, () => {
  // Node's `createRequire` inside Jest is Jest's: it resolves as the suite's imports do (mapping and all).
  const require = createRequire(import.meta.url);
  const fromTests = require.resolve('bullmq');
  const fromNestBullmq = createRequire(require.resolve('@nestjs/bullmq')).resolve('bullmq');
  expect([fromTests, fromNestBullmq].filter((path) => !path.startsWith(installed))).toEqual([]);
  const entryPackage = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { version: string };
  expect(entryPackage.version).toBe(version);
  // The library's own loader: the scripts it composes with are those of the bullmq it runs.
  expect(installedBullCommands().version).toBe(version);
  // One ioredis for the library, the tests and bullmq (the installed copy links the repository's).
  expect(createRequire(fromTests).resolve('ioredis')).toBe(require.resolve('ioredis'));
  expect(dirname(require.resolve('ioredis'))).not.toContain(installed);
});
