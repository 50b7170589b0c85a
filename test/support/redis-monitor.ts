import { Redis } from 'ioredis';
import { tcpPortsOfProcess } from './redis-clients.js';

/** One command as Redis `MONITOR` reports it. */
export interface MonitoredCommand {
  /** Upper-case command name. */
  name: string;
  args: string[];
  /** `ip:port` of the client that sent it, or `lua` for a command run by a script. */
  source: string;
  /** When the test saw it (`Date.now()`). */
  at: number;
}

/**
 * Every command Redis executes while it runs, from Redis' own `MONITOR` feed: lets a test count
 * what a process really sends (e.g. how many stream reads an api makes) without any hook in the
 * product. Commands are matched to a process by the local ports of its sockets.
 */
export class RedisMonitor {
  readonly commands: MonitoredCommand[] = [];
  private listeners: Array<() => void> = [];

  private constructor(
    private readonly monitor: Redis,
    keep: (command: MonitoredCommand) => boolean,
  ) {
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      const command = { name: String(args[0]).toUpperCase(), args: args.slice(1), source, at: Date.now() };
      if (!keep(command)) return;
      this.commands.push(command);
      for (const listener of [...this.listeners]) listener();
    });
  }

  /**
   * Starts monitoring; resolves once Redis acknowledged `MONITOR` (later commands are all seen).
   * Only commands that `keep` accepts are recorded (and wake {@link until}).
   */
  static async start(url: string, keep: (command: MonitoredCommand) => boolean = () => true): Promise<RedisMonitor> {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    return new RedisMonitor(await client.monitor(), keep);
  }

  /** A filter for commands sent by any socket of process `pid` (read now: call it after the process connected). */
  static fromProcess(pid: number): (command: MonitoredCommand) => boolean {
    const ports = tcpPortsOfProcess(pid);
    return (command) => command.source.startsWith('127.0.0.1:') && ports.has(Number(command.source.slice(command.source.indexOf(':') + 1)));
  }

  /**
   * The cursor after which a stream read of `key` asked for entries (`XRANGE` start or `XREAD`
   * id), or undefined when `command` does not read `key`.
   */
  static readCursor(command: MonitoredCommand, key: string): string | undefined {
    if (command.name === 'XRANGE' && command.args[0] === key) return command.args[1].replace(/^\(/, '');
    if (command.name !== 'XREAD') return undefined;
    const streams = command.args.findIndex((arg) => arg.toUpperCase() === 'STREAMS');
    const keys = (command.args.length - streams - 1) / 2;
    const index = command.args.indexOf(key, streams + 1);
    return index < 0 || index > streams + keys ? undefined : command.args[index + keys];
  }

  /** Commands seen since index `from` (see {@link mark}) that match. */
  since(from: number, predicate: (command: MonitoredCommand) => boolean = () => true): MonitoredCommand[] {
    return this.commands.slice(from).filter(predicate);
  }

  /** The position to count from later. */
  mark(): number {
    return this.commands.length;
  }

  /**
   * Resolves once `check` (run after every monitored command) returns true; rejects after
   * `timeoutMs` with `describe()` in the message.
   */
  until(check: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const listener = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((other) => other !== listener);
        resolve();
      };
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((other) => other !== listener);
        reject(new Error(`not seen within ${timeoutMs} ms: ${describe()}`));
      }, timeoutMs);
      this.listeners.push(listener);
    });
  }

  stop(): void {
    this.listeners = [];
    this.monitor.disconnect();
  }
}

/**
 * Names of the connections of process `pid` that are blocked in a command right now (`CLIENT
 * LIST` flag `b`), e.g. the shared event reader in `XREAD BLOCK` while it follows some job.
 */
export async function blockedConnectionsOf(redis: Redis, pid: number): Promise<string[]> {
  const ports = tcpPortsOfProcess(pid);
  const text = (await redis.client('LIST')) as string;
  const blocked: string[] = [];
  for (const line of text.split('\n')) {
    const fields = new Map(
      line
        .trim()
        .split(' ')
        .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
    );
    const addr = fields.get('addr') ?? '';
    if (!addr.startsWith('127.0.0.1:') || !ports.has(Number(addr.slice(addr.indexOf(':') + 1)))) continue;
    if ((fields.get('flags') ?? '').includes('b')) blocked.push(fields.get('name') || '(unnamed)');
  }
  return blocked;
}
