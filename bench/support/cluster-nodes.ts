import { createServer } from 'node:net';
import { freePort } from './redis-server.js';

/**
 * What the bench's cluster and the test harness's cluster share: how a node gets its ports and
 * how `CLUSTER NODES` reads. (The test harness imports it from here: the bench cannot import from
 * `test/`.)
 */

/** Redis Cluster's bus port of a node is its port plus this. */
export const BUS_PORT_OFFSET = 10_000;

/** True when nothing listens on `port` of 127.0.0.1 right now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free port whose cluster bus port is free too, and neither among `taken`. */
export async function freeNodePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await freePort();
    const bus = port + BUS_PORT_OFFSET;
    if (bus > 65_535 || taken.has(port) || taken.has(bus)) continue;
    if (await isFree(bus)) return port;
  }
}

/** What `CLUSTER NODES` says of one node. */
export interface ClusterNodeView {
  port: number;
  role: 'master' | 'replica';
  /** Flagged failing (`fail`) or suspected to be (`fail?`). */
  failed: boolean;
  /** Slot ranges a master serves, e.g. `0-5460`. */
  slots: string[];
}

/** The nodes of a `CLUSTER NODES` reply. */
export function parseClusterNodes(text: string): ClusterNodeView[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [, address, flags, , , , , , ...slots] = line.split(' ');
      return {
        port: Number(address.split(':')[1].split('@')[0]),
        role: flags.includes('master') ? 'master' : 'replica',
        failed: flags.includes('fail'),
        slots,
      };
    });
}
