import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * How many established TCP connections process `pid` holds on its listening `port` (connections
 * clients opened to it), read from /proc: which api a balancer sent a long-lived stream to.
 */
export function inboundConnections(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]);
    } catch {
      // closed meanwhile
    }
  }
  let count = 0;
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/net/${table}`, 'utf8').split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      if (columns.length < 10) continue;
      const localPort = parseInt(columns[1].slice(columns[1].lastIndexOf(':') + 1), 16);
      // State 01 is ESTABLISHED; column 9 is the socket's inode.
      if (localPort === port && columns[3] === '01' && inodes.has(columns[9])) count++;
    }
  }
  return count;
}
