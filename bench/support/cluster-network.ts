import { connect, createServer, type Server, type Socket } from 'node:net';

/** One node as the network sees it: where it listens, and the loopback address its own connections come from. */
export interface NetworkNode {
  /** Its client port, the same on 127.0.0.1 (the network's side) and on `host` (the node's side); its bus port is this plus `busOffset`. */
  port: number;
  /** The node's own loopback address (e.g. `127.0.1.1`): it listens there and binds its outgoing connections to it. */
  host: string;
}

/** A connection through the network, between the socket that came in and the one to the node it is for. */
interface Link {
  incoming: Socket;
  outgoing?: Socket;
  /** The node at each end: the one connected to, and the one connecting (undefined for a client). */
  to: number;
  from?: number;
  cut: boolean;
}

/**
 * A network between the nodes of a local Redis Cluster that can be cut, standing in for the
 * switches between machines: each node listens on its own loopback address, and this process
 * forwards 127.0.0.1:`port` (clients, replication) and 127.0.0.1:`port + busOffset` (the cluster
 * bus) to it, byte for byte. The nodes announce 127.0.0.1, so that everything (clients, the
 * other nodes' gossip, a replica's link to its master) goes through here; a connection's source
 * address tells which node made it. {@link isolate} cuts one node off from the other nodes while
 * clients still reach it, as a network partition that leaves a master with its clients but
 * without its replica and the cluster's majority would; {@link heal} ends the cut.
 *
 * A cut link forwards nothing more (neither side reads, as when packets stop arriving); healing
 * resets the cut links, and the nodes connect again. Bytes forwarded before the cut still arrive,
 * and so do those a node wrote before it died: the kernel of the node's machine still sends what
 * it was given.
 */
export class ClusterNetwork {
  private readonly links = new Set<Link>();
  /** Every open socket, in links or not (a paused one does not keep Node running, nor does it close by itself). */
  private readonly sockets = new Set<Socket>();
  private isolated?: number;

  private constructor(
    private readonly nodes: readonly NetworkNode[],
    private readonly servers: Server[],
  ) {}

  /** Listens on 127.0.0.1 for every node's client and bus port, forwarding each to the node's own address. */
  static async start(nodes: readonly NetworkNode[], busOffset: number): Promise<ClusterNetwork> {
    const servers: Server[] = [];
    const network = new ClusterNetwork(nodes, servers);
    try {
      for (const [index, node] of nodes.entries()) {
        for (const port of [node.port, node.port + busOffset]) {
          const server = createServer((socket) => network.forward(socket, index, port));
          servers.push(server);
          await new Promise<void>((resolve, reject) => {
            server.once('error', reject);
            server.listen(port, '127.0.0.1', () => resolve());
          });
        }
      }
    } catch (error) {
      await network.stop();
      throw error;
    }
    return network;
  }

  /** Cuts the node on `port` off from every other node (existing and new links); clients still reach it and it them. */
  isolate(port: number): void {
    this.isolated = this.nodes.findIndex((node) => node.port === port);
    if (this.isolated < 0) throw new Error(`no node of the network on port ${port}`);
    for (const link of this.links) if (this.crossesCut(link)) this.cut(link);
  }

  /** Ends the cut: the links it held are reset (the nodes connect again), new links pass. */
  heal(): void {
    this.isolated = undefined;
    for (const link of this.links) {
      if (!link.cut) continue;
      link.incoming.resetAndDestroy();
      link.outgoing?.resetAndDestroy();
      this.links.delete(link);
    }
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.links.clear();
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }

  private forward(incoming: Socket, to: number, port: number): void {
    const fromIndex = this.nodes.findIndex((node) => node.host === incoming.remoteAddress);
    const link: Link = { incoming, to, from: fromIndex < 0 ? undefined : fromIndex, cut: false };
    this.links.add(link);
    this.track(incoming);
    if (this.crossesCut(link)) {
      // Accepted, and then nothing: as a node on the other side of a partition sees it.
      this.cut(link);
      return;
    }
    const outgoing = connect({ host: this.nodes[to].host, port });
    link.outgoing = outgoing;
    this.track(outgoing);
    // What one side sent before it closed (or died: its kernel still sends it) reaches the other,
    // then the other is closed too; across a cut nothing is told until the heal resets both.
    const closeOther = (other: Socket): void => {
      if (link.cut) return;
      this.links.delete(link);
      other.end(() => other.destroy());
    };
    incoming.once('close', () => closeOther(outgoing));
    outgoing.once('close', () => closeOther(incoming));
    incoming.pipe(outgoing);
    outgoing.pipe(incoming);
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private crossesCut(link: Link): boolean {
    if (this.isolated === undefined || link.from === undefined) return false;
    return (link.from === this.isolated) !== (link.to === this.isolated);
  }

  private cut(link: Link): void {
    link.cut = true;
    link.incoming.unpipe();
    link.incoming.pause();
    link.outgoing?.unpipe();
    link.outgoing?.pause();
  }
}
