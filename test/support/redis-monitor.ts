import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Redis } from 'ioredis';
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

/** A command in RESP, as any client sends it. */
function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

/**
 * Parses one `MONITOR` line (`+<time> [<db> <source>] "cmd" "arg" ...`): the arguments are quoted
 * as Redis' `sdscatrepr` writes them (`\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b`, `\xhh`).
 */
export function parseMonitorLine(line: string): { source: string; args: string[] } | undefined {
  const open = line.indexOf('[');
  const close = line.indexOf(']', open);
  if (!line.startsWith('+') || open < 0 || close < 0) return undefined;
  const source = line.slice(line.indexOf(' ', open) + 1, close);
  const args: string[] = [];
  const escapes: Record<string, string> = { n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b', '\\': '\\', '"': '"' };
  for (let i = close + 1; i < line.length; i++) {
    if (line[i] !== '"') continue;
    const bytes: number[] = [];
    for (i++; i < line.length && line[i] !== '"'; i++) {
      if (line[i] !== '\\') {
        bytes.push(...Buffer.from(line[i], 'latin1'));
      } else if (line[i + 1] === 'x') {
        bytes.push(parseInt(line.slice(i + 2, i + 4), 16));
        i += 3;
      } else {
        bytes.push(...Buffer.from(escapes[line[i + 1]] ?? line[i + 1], 'latin1'));
        i += 1;
      }
    }
    args.push(Buffer.from(bytes).toString('utf8'));
  }
  return { source, args };
}

/**
 * Every command Redis executes while it runs, from Redis' own `MONITOR` feed: lets a test count
 * what a process really sends (e.g. how many stream reads an api makes) without any hook in the
 * product. Commands are matched to a process by the local ports of its sockets.
 *
 * It reads the feed on a plain socket: ioredis switches a connection to monitor mode only once the
 * `+OK` of `MONITOR` is handled, so feed lines arriving in the same packet as that `+OK` (under
 * load) made it fail with "Command queue state error".
 */
export class RedisMonitor {
  readonly commands: MonitoredCommand[] = [];
  private listeners: Array<() => void> = [];
  private buffered = '';

  private constructor(
    private readonly socket: Socket,
    private readonly keep: (command: MonitoredCommand) => boolean,
  ) {}

  private onLine(line: string): void {
    const parsed = parseMonitorLine(line);
    if (!parsed || !parsed.args.length) return;
    const command = { name: parsed.args[0].toUpperCase(), args: parsed.args.slice(1), source: parsed.source, at: Date.now() };
    if (!this.keep(command)) return;
    this.commands.push(command);
    for (const listener of [...this.listeners]) listener();
  }

  /**
   * Starts monitoring; resolves once Redis acknowledged `MONITOR` (later commands are all seen).
   * Only commands that `keep` accepts are recorded (and wake {@link until}).
   */
  static async start(url: string, keep: (command: MonitoredCommand) => boolean = () => true): Promise<RedisMonitor> {
    const { hostname, port, username, password } = new URL(url);
    const socket = connect(Number(port || 6379), hostname);
    socket.setEncoding('latin1');
    await once(socket, 'connect');
    const monitor = new RedisMonitor(socket, keep);
    const expectedOks = password ? 2 : 1;
    let oks = 0;
    const acknowledged = new Promise<void>((resolve, reject) => {
      socket.on('data', (chunk: string) => {
        monitor.buffered += chunk;
        for (let end = monitor.buffered.indexOf('\r\n'); end >= 0; end = monitor.buffered.indexOf('\r\n')) {
          const line = monitor.buffered.slice(0, end);
          monitor.buffered = monitor.buffered.slice(end + 2);
          if (oks < expectedOks) {
            if (line !== '+OK') reject(new Error(`MONITOR refused: ${line}`));
            if (++oks === expectedOks) resolve();
            continue;
          }
          monitor.onLine(line);
        }
      });
      socket.once('error', reject);
    });
    if (password) {
      const user = decodeURIComponent(username);
      socket.write(resp(user ? ['AUTH', user, decodeURIComponent(password)] : ['AUTH', decodeURIComponent(password)]));
    }
    socket.write(resp(['MONITOR']));
    await acknowledged;
    return monitor;
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

  /**
   * Resolves once MONITOR has shown every command Redis ran before this call: it reports in
   * execution order, so a marker sent now through `client` comes after all of them.
   */
  async caughtUp(client: Redis): Promise<void> {
    const marker = `caught-up-${randomUUID()}`;
    await client.echo(marker);
    await this.until(
      () => this.commands.some((command) => command.args.includes(marker)),
      5000,
      () => 'the marker',
    );
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
    this.socket.destroy();
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
