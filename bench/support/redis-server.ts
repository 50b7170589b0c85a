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
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Starts one server and waits until it accepts connections: on a free port unless `port` is
   * given, with `args` added to the command line (e.g. `--cluster-enabled yes`).
   */
  static async start(options: { port?: number; args?: readonly string[] } = {}): Promise<BenchRedis> {
    const port = options.port ?? (await freePort());
    const dir = mkdtempSync(join(tmpdir(), 'jq-bench-redis-'));
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--maxclients', '10000'];
    args.push(...(options.args ?? []));
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
    return new BenchRedis(port, child, dir);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
