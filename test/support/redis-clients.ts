import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Redis } from 'ioredis';

/** One line of `CLIENT LIST`. */
export interface RedisClientInfo {
  id: string;
  /** The client's address as Redis sees it, `ip:port`. */
  addr: string;
  /** The client's local port (the port part of `addr`). */
  port: number;
  /** `CLIENT SETNAME` name, '' when unnamed. */
  name: string;
  /** Last command. */
  cmd: string;
}

/** Every connection Redis has right now. */
export async function clientList(redis: Redis): Promise<RedisClientInfo[]> {
  const text = (await redis.client('LIST')) as string;
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const fields = new Map<string, string>();
      for (const pair of line.trim().split(' ')) {
        const eq = pair.indexOf('=');
        if (eq > 0) fields.set(pair.slice(0, eq), pair.slice(eq + 1));
      }
      const addr = fields.get('addr') ?? '';
      return {
        id: fields.get('id') ?? '',
        addr,
        port: Number(addr.slice(addr.lastIndexOf(':') + 1)),
        name: fields.get('name') ?? '',
        cmd: fields.get('cmd') ?? '',
      };
    });
}

/**
 * Local TCP ports of the sockets the process `pid` holds (Linux: its `/proc/<pid>/fd` socket
 * inodes matched against `/proc/<pid>/net/tcp{,6}`). Lets a test tell which process a Redis
 * connection belongs to when several processes use the same connection names.
 */
export function tcpPortsOfProcess(pid: number): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const match = /^socket:\[([0-9]+)\]$/.exec(target);
    if (match) inodes.add(match[1]);
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      if (columns.length < 10 || !inodes.has(columns[9])) continue;
      ports.add(parseInt(columns[1].slice(columns[1].lastIndexOf(':') + 1), 16));
    }
  }
  return ports;
}

/** The Redis connections of process `pid`, counted by connection name (sorted by name). */
export async function redisConnectionsOf(redis: Redis, pid: number): Promise<Record<string, number>> {
  const ports = tcpPortsOfProcess(pid);
  const counts: Record<string, number> = {};
  for (const client of await clientList(redis)) {
    if (!client.addr.startsWith('127.0.0.1:') || !ports.has(client.port)) continue;
    const name = client.name || '(unnamed)';
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}
