import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

type Message = { id: number; method: string; params: unknown } | { id: number; result?: unknown; error?: string } | { ready: true };

/** The methods a child role serves to the orchestrator. */
export type RoleMethods = Record<string, (params: never) => unknown>;

const CHILD = fileURLToPath(new URL('../child.js', import.meta.url));

/**
 * A benchmark role in its own Node process (`child.js <role>`), driven by request/response
 * messages over the IPC channel.
 */
export class RoleProcess {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private exited = false;

  private constructor(
    readonly role: string,
    readonly child: ChildProcess,
  ) {
    child.on('message', (message: Message) => {
      if (!('id' in message) || 'method' in message) return;
      const pending = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.error !== undefined) pending?.reject(new Error(`${role}: ${message.error}`));
      else pending?.resolve(message.result);
    });
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const pending of this.waiting.values()) pending.reject(new Error(`${role} exited (${code ?? signal})`));
      this.waiting.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Forks the role with `config` (JSON) and waits until it is ready. Every role can be told to
   * collect its garbage (`collectGarbage`), so that a measurement does not pay for the last one's.
   */
  static async start(role: string, config: unknown, execArgv: string[] = []): Promise<RoleProcess> {
    const child = fork(CHILD, [role, JSON.stringify(config)], {
      execArgv: ['--expose-gc', ...execArgv],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = new Promise<void>((resolve, reject) => {
      const onMessage = (message: Message): void => {
        if ('ready' in message) {
          child.off('message', onMessage);
          resolve();
        }
      };
      child.on('message', onMessage);
      child.once('exit', (code) => reject(new Error(`${role} exited (${code}) before it was ready`)));
    });
    const process = new RoleProcess(role, child);
    await ready;
    return process;
  }

  call<T = unknown>(method: string, params: unknown = {}): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.role} has exited`));
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.child.send({ id, method, params });
    });
  }

  /** Kills the process with SIGKILL (no shutdown of any kind) and waits until it is gone. */
  async kill(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGKILL');
    await exited;
  }

  /** Asks the role to close (its `close` method), then makes sure the process is gone. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    // It exits by itself once closed; signals only for one that does not.
    const term = setTimeout(() => this.child.kill('SIGTERM'), 15_000);
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await this.call('close').catch(() => undefined);
    await exited;
    clearTimeout(term);
    clearTimeout(kill);
  }
}

/** Child side: serves `methods` over IPC and announces readiness. */
export function serveRole(methods: RoleMethods): void {
  process.on('message', (message: Message) => {
    if (!('method' in message)) return;
    const method = methods[message.method];
    Promise.resolve()
      .then(() => {
        if (!method) throw new Error(`unknown method ${message.method}`);
        return method(message.params as never);
      })
      .then(
        (result) => process.send!({ id: message.id, result: result ?? null }),
        (error: Error) => process.send!({ id: message.id, error: error?.stack ?? String(error) }),
      );
  });
  process.send!({ ready: true });
}
