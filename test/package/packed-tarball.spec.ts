import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AppProcess } from '../support/app-process.js';
import { freePort } from '../support/free-port.js';
import { RedisServer } from '../support/redis-server.js';

const execFileAsync = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SOURCES = join(ROOT, 'test/package/fresh-app');
/**
 * What a Nest + BullMQ application brings itself, installed at the registry's newest versions: the
 * library's peer dependencies (the optional ones too: the app uses `/terminus` and `/metrics`)
 * and Nest's HTTP platform.
 */
const PEERS = [
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/platform-express',
  '@nestjs/bullmq',
  '@nestjs/terminus',
  'bullmq',
  'ioredis',
  'prom-client',
  'reflect-metadata',
  'rxjs',
];
const DEV = ['typescript', '@types/node'];

/** Runs a command; a failure throws with everything it printed (npm's ERESOLVE report, tsc's errors). */
async function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { cwd, env, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout, stderr, message } = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}: ${message}\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
}

interface Tarball {
  /** Absolute path of the .tgz. */
  file: string;
  /** The paths it holds, relative to the package root. */
  paths: string[];
  /** Where it was unpacked (`<dir>/package`). */
  unpacked: string;
}

/** `npm pack` of a workspace package (its `prepack` builds it), unpacked next to the tarball. */
async function pack(packageDir: string, dest: string): Promise<Tarball> {
  const stdout = await run('npm', ['pack', '--json', '--pack-destination', dest], packageDir);
  const [{ filename, files }] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const into = join(dest, filename.replace(/\.tgz$/, ''));
  mkdirSync(into);
  await run('tar', ['-xzf', join(dest, filename), '-C', into], dest);
  return { file: join(dest, filename), paths: files.map((file) => file.path), unpacked: join(into, 'package') };
}

/**
 * What the tarball's `sourceMappingURL` comments point at and it lacks, as `file -> missing`: a map
 * file not shipped, or a source a shipped (or inline) map names without embedding its content.
 */
function danglingSourceMaps(tarball: Tarball): string[] {
  const shipped = new Set(tarball.paths);
  const dangling: string[] = [];
  for (const path of tarball.paths.filter((file) => /\.(js|d\.ts)$/.test(file))) {
    for (const [, url] of readFileSync(join(tarball.unpacked, path), 'utf8').matchAll(/^\/\/# sourceMappingURL=(\S+)\s*$/gm)) {
      const inline = /^data:application\/json;(?:charset=utf-8;)?base64,(.*)$/i.exec(url);
      const mapPath = inline ? path : posix.normalize(posix.join(posix.dirname(path), url));
      if (!inline && !shipped.has(mapPath)) {
        dangling.push(`${path} -> ${url}`);
        continue;
      }
      const map = JSON.parse(
        inline ? Buffer.from(inline[1], 'base64').toString('utf8') : readFileSync(join(tarball.unpacked, mapPath), 'utf8'),
      ) as {
        sourceRoot?: string;
        sources: string[];
        sourcesContent?: Array<string | null>;
      };
      map.sources.forEach((source, index) => {
        const file = posix.normalize(posix.join(posix.dirname(mapPath), map.sourceRoot ?? '', source));
        if (typeof map.sourcesContent?.[index] !== 'string' && !shipped.has(file)) dangling.push(`${path} -> ${file}`);
      });
    }
  }
  return dangling;
}

/** The registry's newest version of each package (`npm view` asks the registry, not npm's cache). */
async function newestVersions(names: string[]): Promise<Record<string, string>> {
  const versions = await Promise.all(
    names.map(async (name) => JSON.parse(await run('npm', ['view', `${name}@latest`, 'version', '--json'], tmpdir())) as string),
  );
  return Object.fromEntries(names.map((name, index) => [name, versions[index]]));
}

interface StreamEvent {
  id: string;
  type: string;
  data: unknown;
}

/** What `fresh-app/client.ts` prints. */
interface Transcript {
  report: StreamEvent[];
  resumed: StreamEvent[];
  afterQuery: { status: number; events: StreamEvent[] };
  atEnd: { status: number; events: StreamEvent[] };
  held: StreamEvent[];
  cancel: { status: number; body: unknown };
  cancelAgain: number;
  health: { status: number; body: unknown };
  sseDelivered?: string;
}

const typed = (events: StreamEvent[]): Array<[string, unknown]> => events.map(({ type, data }) => [type, data]);

/**
 * The packages as users get them: `npm pack` of `libs/job-queue` and `libs/client`, installed into
 * a fresh application outside the repository beside the registry's newest NestJS, BullMQ and
 * ioredis, without `--legacy-peer-deps` (a peer range that excludes a newest peer fails the
 * install with ERESOLVE). The application (`fresh-app/`: a `@nestjs/bullmq` processor, plain
 * `queue.add`, SSE by `JobEventStreamer`, cancel; a client built on the packed client package) is
 * compiled by its own newest TypeScript with `strict`, then run: on `bullmq` as a worker process
 * and an api process against a real Redis, on `memory` as one process.
 */
describe('the packed packages in a fresh application', () => {
  let dir: string;
  let app: string;
  let library: Tarball;
  let client: Tarball;
  let versions: Record<string, string>;
  let redis: RedisServer | undefined;
  const processes: AppProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jq-package-'));
    [library, client, versions] = await Promise.all([
      pack(join(ROOT, 'libs/job-queue'), dir),
      pack(join(ROOT, 'libs/client'), dir),
      newestVersions([...PEERS, ...DEV]),
    ]);

    app = join(dir, 'fresh-app');
    mkdirSync(app);
    const pick = (names: string[]): Record<string, string> => Object.fromEntries(names.map((name) => [name, versions[name]]));
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({
        name: 'fresh-app',
        private: true,
        type: 'module',
        dependencies: { 'nestjs-job-streams': `file:${library.file}`, 'nestjs-job-streams-client': `file:${client.file}`, ...pick(PEERS) },
        devDependencies: pick(DEV),
      }),
    );
    // No --legacy-peer-deps, no --force: peer ranges are checked as a user's npm checks them.
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], app);
    for (const file of ['app.ts', 'client.ts', 'tsconfig.json']) copyFileSync(join(SOURCES, file), join(app, file));
    await run(join(app, 'node_modules/.bin/tsc'), ['-p', '.'], app);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop()));
    await redis?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('installed the newest peers and the packed packages', () => {
    for (const name of [...PEERS, ...DEV]) {
      const installed = JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
      expect(`${name}@${installed.version}`).toBe(`${name}@${versions[name]}`);
    }
    expect(existsSync(join(app, 'node_modules/nestjs-job-streams/dist/index.js'))).toBe(true);
    expect(existsSync(join(app, 'node_modules/nestjs-job-streams-client/dist/index.js'))).toBe(true);
  });

  it('ships compiled code, typings and Lua scripts; no sources, build state or dangling source maps', () => {
    expect(library.paths).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'dist/index.js',
        'dist/index.d.ts',
        'dist/http/index.js',
        'dist/http/index.d.ts',
      ]),
    );
    expect(library.paths.filter((path) => path.endsWith('.lua')).length).toBeGreaterThanOrEqual(7);
    expect(client.paths).toEqual(expect.arrayContaining(['package.json', 'dist/index.js', 'dist/index.d.ts']));
    for (const tarball of [library, client]) {
      expect(tarball.paths.filter((path) => path.startsWith('src/') || path.includes('tsbuildinfo'))).toEqual([]);
      expect(danglingSourceMaps(tarball)).toEqual([]);
    }
  });

  it("ships the client's README", () => {
    expect(client.paths).toContain('README.md');
    expect(readFileSync(join(client.unpacked, 'README.md'), 'utf8')).toMatch(/^# nestjs-job-streams-client\n/);
  });

  it('ships typings that type-check under strict with the newest TypeScript (skipLibCheck off)', async () => {
    // The app's own build skips library checking, as Nest's starter does; here nothing is skipped,
    // and only the diagnostics of the packed packages count (third-party typings have their own).
    let output: string;
    try {
      output = await run(
        join(app, 'node_modules/.bin/tsc'),
        ['-p', '.', '--noEmit', '--skipLibCheck', 'false', '--pretty', 'false', '--listFiles'],
        app,
      );
    } catch (error) {
      output = (error as Error).message;
    }
    const lines = output.split('\n');
    for (const entry of [
      'nestjs-job-streams/dist/index.d.ts',
      'nestjs-job-streams/dist/http/index.d.ts',
      'nestjs-job-streams-client/dist/index.d.ts',
    ]) {
      expect(lines).toContain(join(app, 'node_modules', entry));
    }
    expect(lines.filter((line) => /error TS\d+/.test(line) && line.includes('node_modules/nestjs-job-streams'))).toEqual([]);
  }, 60_000);

  /** Runs the compiled client against `baseUrl`, checks what it saw, exactly. */
  async function expectReportStreams(baseUrl: string, backend: 'bullmq' | 'memory'): Promise<void> {
    const stdout = await run(process.execPath, ['dist/client.js'], app, { PATH: process.env.PATH ?? '', BASE_URL: baseUrl });
    const transcript = JSON.parse(stdout) as Transcript;
    expect(typed(transcript.report)).toEqual([
      ['started', { attempt: 1 }],
      ['progress', { page: 1, pages: 2 }],
      ['log', { message: 'page 1 of 2' }],
      ['progress', { page: 2, pages: 2 }],
      ['log', { message: 'page 2 of 2' }],
      ['completed', { result: { pages: 2 } }],
    ]);
    expect(new Set(transcript.report.map((event) => event.id)).size).toBe(6);
    // Resumed after the third event (Last-Event-ID), after the fifth (?after=), after the last (204).
    expect(transcript.resumed).toEqual(transcript.report.slice(3));
    expect(transcript.afterQuery).toEqual({ status: 200, events: transcript.report.slice(5) });
    expect(transcript.atEnd).toEqual({ status: 204, events: [] });
    // Cancelled once its first page was out, while the processor waited for its abort signal.
    expect(typed(transcript.held)).toEqual([
      ['started', { attempt: 1 }],
      ['progress', { page: 1, pages: 3 }],
      ['log', { message: 'page 1 of 3' }],
      ['cancelled', { reason: 'cancelled' }],
    ]);
    expect(transcript.cancel).toEqual({ status: 202, body: { cancelled: true } });
    expect(transcript.cancelAgain).toBe(409);
    expect(transcript.health).toMatchObject({ status: 200, body: { status: 'ok', info: { jobQueue: { status: 'up', backend } } } });
    expect(transcript.sseDelivered).toBe('14');
  }

  it('runs the processor and serves its SSE from another process on the bullmq backend', async () => {
    redis = await RedisServer.start();
    const port = await freePort();
    const env = { REDIS_URL: redis.url };
    const [worker, api] = await AppProcess.startAll(processes, [
      AppProcess.script(join(app, 'dist/app.js'), { ...env, ROLE: 'worker' }, /fresh-app worker running/, app),
      AppProcess.script(join(app, 'dist/app.js'), { ...env, ROLE: 'api', PORT: String(port) }, /fresh-app api listening on/, app),
    ]);
    await expectReportStreams(`http://127.0.0.1:${port}`, 'bullmq');
    await Promise.all([worker.stop(), api.stop()]);
  }, 60_000);

  it('runs the same in one process on the memory backend', async () => {
    const port = await freePort();
    const [memory] = await AppProcess.startAll(processes, [
      AppProcess.script(join(app, 'dist/app.js'), { ROLE: 'memory', PORT: String(port) }, /fresh-app memory listening on/, app),
    ]);
    await expectReportStreams(`http://127.0.0.1:${port}`, 'memory');
    await memory.stop();
  }, 60_000);
});
