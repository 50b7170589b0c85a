import { connect, createServer, type Server, type Socket } from 'node:net';

/** One client connection through the proxy. */
interface ProxiedConnection {
  client: Socket;
  upstream: Socket;
  /** The name the client gave itself (`CLIENT SETNAME`), once seen. */
  name?: string;
  /** What the client sent before its name was seen (a command may span chunks). */
  head: string;
}

/**
 * A TCP proxy in front of a Redis server that can play two faults on cue, so that a test stands
 * in a state instead of racing for it:
 *
 * - {@link hold}: what clients send still reaches the server at once (their commands run), but the
 *   server's replies wait in the proxy until {@link release}: "a command has run, its reply is on
 *   its way".
 * - {@link refuse}: connections of clients that name themselves `name` (`CLIENT SETNAME`, which
 *   ioredis sends before its ready check) are closed as soon as they do, until {@link admitAll}:
 *   one connection of a process down while the others work.
 */
export class RedisFaultProxy {
  private holding = false;
  private readonly held: Array<{ socket: Socket; chunk: Buffer }> = [];
  /** Called once the next reply is held (see {@link untilHeld}). */
  private readonly onHeld = new Set<() => void>();
  private readonly connections = new Set<ProxiedConnection>();
  private readonly refused = new Set<string>();

  private constructor(
    private readonly server: Server,
    /** Port the proxy listens on (loopback). */
    readonly port: number,
  ) {}

  /** Listens on a free loopback port and forwards every connection to `target`. */
  static async start(target: { host: string; port: number }): Promise<RedisFaultProxy> {
    const self: { proxy?: RedisFaultProxy } = {};
    const server = createServer((client) => self.proxy!.accept(client, target));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (typeof address !== 'object' || !address) throw new Error('the proxy has no port');
    self.proxy = new RedisFaultProxy(server, address.port);
    return self.proxy;
  }

  /** `url` (a `redis://` URL of the proxied server) pointed at the proxy, credentials kept. */
  urlFor(url: string): string {
    const proxied = new URL(url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(this.port);
    return proxied.toString();
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    const upstream = connect(target.port, target.host);
    const connection: ProxiedConnection = { client, upstream, head: '' };
    this.connections.add(connection);
    for (const socket of [client, upstream]) socket.on('error', () => undefined);
    client.on('close', () => {
      upstream.destroy();
      this.connections.delete(connection);
    });
    upstream.on('close', () => client.destroy());
    client.on('data', (chunk: Buffer) => {
      if (connection.name === undefined) {
        connection.head += chunk.toString('latin1');
        // RESP: *3 $6 CLIENT $7 SETNAME $<n> <name>
        const named = /SETNAME\r\n\$\d+\r\n([^\r]*)\r\n/i.exec(connection.head);
        if (named) connection.name = named[1];
        if (connection.name !== undefined && this.refused.has(connection.name)) return void client.destroy();
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!this.holding) return void client.write(chunk);
      this.held.push({ socket: client, chunk });
      for (const resolve of this.onHeld) resolve();
      this.onHeld.clear();
    });
  }

  /** From now on, replies wait in the proxy. */
  hold(): void {
    this.holding = true;
  }

  /** Sends every held reply, in order, and lets later ones through at once. */
  release(): void {
    this.holding = false;
    for (const { socket, chunk } of this.held.splice(0)) socket.write(chunk);
  }

  /**
   * Resolves once a reply is held (at once if one is): the server answered a command sent through
   * the proxy, whatever else the test saw of that command first.
   */
  untilHeld(timeoutMs: number): Promise<void> {
    if (this.held.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.onHeld.delete(held);
        reject(new Error(`no reply held within ${timeoutMs} ms`));
      }, timeoutMs);
      const held = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.onHeld.add(held);
    });
  }

  /** Closes the connections named `name` and every new one that takes that name, until {@link admitAll}. */
  refuse(name: string): void {
    this.refused.add(name);
    for (const connection of this.connections) if (connection.name === name) connection.client.destroy();
  }

  /** Lets every client connect again. */
  admitAll(): void {
    this.refused.clear();
  }

  async stop(): Promise<void> {
    for (const { client } of this.connections) client.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
