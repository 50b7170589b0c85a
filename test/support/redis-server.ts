import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { waitForLine } from './wait-for-line.js';

/** Options of {@link startRedis}. */
export interface RedisServerOptions {
  /** Append-only file on (so a restart keeps the data). Default off. */
  appendOnly?: boolean;
  /** Require this password (`--requirepass`, the `default` user's password). Default none. */
  password?: string;
  /** Replicate the server on this port of 127.0.0.1 (`--replicaof`). Default: a master. */
  replicaOf?: number;
}

/** A real `redis-server` on a free loopback port, for one test file. */
export class RedisServer {
  private child?: ChildProcess;

  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {}

  /** Starts `redis-server` (from PATH) on a free port; fails, never skips, when it is missing. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), mkdtempSync(join(tmpdir(), 'jq-redis-')), options);
    await server.spawn();
    return server;
  }

  /** `redis://127.0.0.1:<port>`, with `:<password>@` (URL-encoded) when the server requires one. */
  get url(): string {
    const auth = this.options.password === undefined ? '' : `:${encodeURIComponent(this.options.password)}@`;
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  /** Stops the server (SIGTERM, waits for exit); with append-only on, data survives for {@link restart}. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGCONT'); // a paused server handles no SIGTERM
    child.kill('SIGTERM');
    await exited;
    this.child = undefined;
  }

  /**
   * Freezes the server (SIGSTOP): connections stay open and commands go unanswered, as with a hung
   * node or a black-holed network. {@link resume} thaws it.
   */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** Thaws a server frozen by {@link pause} (SIGCONT). */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.spawn();
  }

  /** Stops it and removes its files. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async spawn(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    args.push('--appendonly', this.options.appendOnly ? 'yes' : 'no');
    if (this.options.appendOnly) args.push('--appendfsync', 'always');
    if (this.options.password !== undefined) args.push('--requirepass', this.options.password);
    if (this.options.replicaOf !== undefined) args.push('--replicaof', '127.0.0.1', String(this.options.replicaOf));
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const spawnError = new Promise<never>((_, reject) =>
      child.once('error', (error) =>
        reject(new Error(`Cannot start redis-server (is it installed? apt-get install redis-server): ${error.message}`)),
      ),
    );
    this.child = child;
    await Promise.race([waitForLine(child, /Ready to accept connections/, 15_000, 'redis-server'), spawnError]);
  }
}
