import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';
import { waitForLine } from './wait-for-line.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A built app (`dist/apps/<name>/main.js`) running as its own process. */
export class AppProcess {
  output = '';
  /** Resolves with the exit code (or signal) once the process has exited and its output is closed. */
  private readonly closed: Promise<number | string>;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number | undefined,
  ) {
    child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    // 'close' (not 'exit') so that `output` is complete once `exited()` resolves.
    this.closed = new Promise((resolve) => child.once('close', (code, signal) => resolve(code ?? signal!)));
  }

  /**
   * Starts processes together and resolves with them in order. Every one that started is pushed
   * to `started` (for the caller's cleanup) even when another one fails; then the first failure is thrown.
   */
  static async startAll(started: AppProcess[], starts: Array<Promise<AppProcess>>): Promise<AppProcess[]> {
    const results = await Promise.allSettled(starts);
    for (const result of results) if (result.status === 'fulfilled') started.push(result.value);
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
    return results.map((result) => (result as PromiseFulfilledResult<AppProcess>).value);
  }

  /** Starts the demo api on a free port and resolves once it listens. Needs `npm run build` first. */
  static api(env: Record<string, string>): Promise<AppProcess> {
    return AppProcess.listening('api', env, /Build API listening on port/);
  }

  /** Starts the demo worker and resolves once it runs. */
  static worker(env: Record<string, string>): Promise<AppProcess> {
    return AppProcess.running('worker', env, /Worker running/);
  }

  /** Starts the built app `name` on a free port (`PORT`); resolves once it printed `ready`. */
  static async listening(name: string, env: Record<string, string>, ready: RegExp): Promise<AppProcess> {
    const port = await freePort();
    const app = AppProcess.spawn(name, { ...env, PORT: String(port) }, port);
    await app.ready(ready, `${name} :${port}`);
    return app;
  }

  /** Starts the built app `name` without a port; resolves once it printed `ready`. */
  static async running(name: string, env: Record<string, string>, ready: RegExp): Promise<AppProcess> {
    const app = AppProcess.spawn(name, env, undefined);
    await app.ready(ready, name);
    return app;
  }

  /** Waits for the start-up line; a process that did not get there is killed, never left behind. */
  private async ready(pattern: RegExp, label: string): Promise<void> {
    try {
      await waitForLine(this.child, pattern, 20_000, label);
    } catch (error) {
      await this.stop('SIGKILL');
      throw error;
    }
  }

  /**
   * Starts `node <file>` (`file` relative to the repository root, or absolute: a script, not a built
   * app) in `cwd` (default the repository root), without a port; resolves once it printed `ready`.
   */
  static async script(file: string, env: Record<string, string>, ready: RegExp, cwd = ROOT): Promise<AppProcess> {
    const app = AppProcess.spawnFile(file, env, undefined, cwd);
    await app.ready(ready, file);
    return app;
  }

  /** Starts the built app `dist/apps/<name>/main.js` without waiting (for start-up failure tests). */
  static spawn(name: string, env: Record<string, string>, port: number | undefined): AppProcess {
    return AppProcess.spawnFile(`dist/apps/${name}/main.js`, env, port);
  }

  private static spawnFile(file: string, env: Record<string, string>, port: number | undefined, cwd = ROOT): AppProcess {
    const child = spawn(process.execPath, [resolve(ROOT, file)], {
      cwd,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new AppProcess(child, port);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Resolves with the exit code (or signal) once the process has exited. */
  exited(): Promise<number | string> {
    return this.closed;
  }

  /** The process id (for mapping its sockets, e.g. Redis connections, to it). */
  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Sends `signal` and waits for the exit; sends SIGKILL when it has not exited after
   * `killAfterMs`, so that a process stuck in shutdown cannot hold a test run forever.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 15_000): Promise<number | string> {
    const exited = this.exited();
    if (this.child.exitCode !== null || this.child.signalCode !== null) return exited;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), killAfterMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** How a test starts the two roles of a built app: api processes (HTTP) and worker processes. */
export interface AppRoles {
  /** Starts an api process on a free port; resolves once it listens. */
  api(env: Record<string, string>): Promise<AppProcess>;
  /** Starts a worker process; resolves once it runs. */
  worker(env: Record<string, string>): Promise<AppProcess>;
}

/** The demo: `dist/apps/api` and `dist/apps/worker`. */
export const DEMO_APPS: AppRoles = { api: (env) => AppProcess.api(env), worker: (env) => AppProcess.worker(env) };

/** `apps/bullmq-example`: one entry point, its role from `APP_ROLE`. */
export const BULLMQ_EXAMPLE: AppRoles = {
  api: (env) => AppProcess.listening('bullmq-example', { ...env, APP_ROLE: 'api' }, /Report API listening on/),
  worker: (env) => AppProcess.running('bullmq-example', { ...env, APP_ROLE: 'worker' }, /Report worker running/),
};
