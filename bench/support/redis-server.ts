import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A TCP port of 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * `redis-server` from PATH on a free loopback port, without persistence (what the test harness in
 * test/support does too; kept separate so the benchmark does not depend on test code).
 */
export class BenchRedis {
  private child: ChildProcess;

  private constructor(
    readonly host: string,
    readonly port: number,
    private readonly args: readonly string[],
    private readonly dir: string,
    child: ChildProcess,
  ) {
    this.child = child;
  }

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** True while the server process runs (not killed, stopped or exited). */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts one server and waits until it accepts connections: on a free port of 127.0.0.1 unless
   * `port` and `host` (another loopback address) are given, with `args` added to the command line
   * (e.g. `--cluster-enabled yes`).
   */
  static async start(options: { host?: string; port?: number; args?: readonly string[] } = {}): Promise<BenchRedis> {
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? (await freePort());
    const dir = mkdtempSync(join(tmpdir(), 'jq-bench-redis-'));
    const args = ['--port', String(port), '--bind', host, '--dir', dir, '--save', '', '--appendonly', 'no', '--maxclients', '10000'];
    args.push(...(options.args ?? []));
    return new BenchRedis(host, port, args, dir, await spawnServer(args));
  }

  /** SIGKILL: the server dies as a crashed machine would, without a word to anyone. Waits until it is gone. */
  async kill(): Promise<void> {
    await this.end('SIGKILL');
  }

  /**
   * Starts the server again after {@link kill}, on the same port, with the same arguments and
   * directory (a cluster node finds its `nodes-<port>.conf` there and rejoins its cluster). Without
   * persistence it starts empty.
   */
  async restart(): Promise<void> {
    if (this.running) throw new Error(`redis-server on port ${this.port} is still running`);
    this.child = await spawnServer(this.args);
  }

  async stop(): Promise<void> {
    await this.end('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    if (!this.running) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill(signal);
    await exited;
  }
}

/** Spawns `redis-server` with `args` and waits until it accepts connections. */
async function spawnServer(args: readonly string[]): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 15_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`Cannot start redis-server (apt-get install redis-server): ${error.message}`));
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (/Ready to accept connections/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return child;
}
