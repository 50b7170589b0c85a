import { readFileSync } from 'node:fs';

/**
 * Bytes the kernel holds for the TCP connections of a server port: what the server has written
 * but the peer has not received yet (send queues of the server's sockets) plus what the peer has
 * received but not read yet (receive queues of the clients' sockets). Memory of no process.
 */
export function kernelQueuedBytes(serverPort: number): { sent: number; unread: number } {
  let sent = 0;
  let unread = 0;
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      if (columns.length < 5) continue;
      const port = (address: string): number => parseInt(address.slice(address.lastIndexOf(':') + 1), 16);
      const [txQueue, rxQueue] = columns[4].split(':').map((hex) => parseInt(hex, 16));
      if (port(columns[1]) === serverPort) sent += txQueue;
      if (port(columns[2]) === serverPort) unread += rxQueue;
    }
  }
  return { sent, unread };
}
