import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a server whose replies can be held back: while {@link hold} is on,
 * what the client sends still reaches the server at once (so its commands run), but what the
 * server answers waits in the proxy until {@link release}. It makes "a command has run, its
 * reply is still on its way" a state a test can stand in, instead of a race it hopes to hit.
 */
export class ReplyHoldingProxy {
  private holding = false;
  private readonly held: Array<{ socket: Socket; chunk: Buffer }> = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    /** `redis://127.0.0.1:<port>` of the proxy. */
    readonly url: string,
  ) {}

  /** Listens on a free loopback port and forwards every connection to `target` (`host:port`). */
  static async start(target: { host: string; port: number }): Promise<ReplyHoldingProxy> {
    const connections: { proxy?: ReplyHoldingProxy } = {};
    const server = createServer((client) => {
      const proxy = connections.proxy!;
      const upstream = connect(target.port, target.host);
      for (const socket of [client, upstream]) {
        proxy.sockets.add(socket);
        socket.on('close', () => proxy.sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.on('data', (chunk: Buffer) => upstream.write(chunk));
      upstream.on('data', (chunk: Buffer) => {
        if (proxy.holding) proxy.held.push({ socket: client, chunk });
        else client.write(chunk);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (typeof address !== 'object' || !address) throw new Error('the proxy has no port');
    connections.proxy = new ReplyHoldingProxy(server, `redis://127.0.0.1:${address.port}`);
    return connections.proxy;
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

  /** How many reply chunks are waiting. */
  get heldReplies(): number {
    return this.held.length;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
