import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { RedisServer } from '../support/redis-server.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const LIBRARY = join(ROOT, 'libs/job-queue');
/** The peer dependencies the fresh application brings itself (here: the repository's installed copies). */
const PEERS = ['@nestjs/common', '@nestjs/core', '@nestjs/bullmq', 'bullmq', 'ioredis', 'reflect-metadata', 'rxjs'];

/**
 * The library as a package: `npm pack` in `libs/job-queue` (its own build, Lua scripts included)
 * makes a tarball that a fresh application outside the repository installs (its few runtime
 * dependencies from npm's cache, or from the registry when the cache lacks their metadata: a
 * lockfile install fetches tarballs only) and uses on both backends.
 */
describe('the packed library in a fresh application', () => {
  let dir: string;
  let app: string;
  let redis: RedisServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jq-package-'));
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: LIBRARY, maxBuffer: 10 * 1024 * 1024 });
    const [{ filename, files }] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const paths = files.map((file) => file.path);
    // What a user gets: compiled code, typings, the Lua scripts; no sources, maps or build state.
    expect(paths).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/http/index.js']));
    expect(paths.filter((path) => path.endsWith('.lua')).length).toBeGreaterThanOrEqual(7);
    expect(paths.filter((path) => path.startsWith('src/') || path.endsWith('.ts.map') || path.includes('tsbuildinfo'))).toEqual([]);

    app = join(dir, 'fresh-app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }));
    await run('npm', ['install', '--prefer-offline', '--legacy-peer-deps', '--no-audit', '--no-fund', join(dir, filename)], { cwd: app });
    for (const peer of PEERS) {
      mkdirSync(dirname(join(app, 'node_modules', peer)), { recursive: true });
      symlinkSync(join(ROOT, 'node_modules', peer), join(app, 'node_modules', peer));
    }
    copyFileSync(join(ROOT, 'test/package/fresh-app.mjs'), join(app, 'main.mjs'));
    redis = await RedisServer.start();
  }, 120_000);

  afterAll(async () => {
    await redis?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each(['memory', 'bullmq'])(
    'runs a @JobHandler job end to end on the %s backend',
    async (backend) => {
      const { stdout } = await run('node', ['main.mjs'], { cwd: app, env: { ...process.env, BACKEND: backend, REDIS_URL: redis.url } });
      expect(JSON.parse(stdout)).toEqual({
        backend,
        events: [
          ['started', { attempt: 1 }],
          ['hello', { to: 'tarball' }],
          ['completed', { result: { greeted: 'tarball' } }],
        ],
      });
    },
    60_000,
  );
});
