import type { Redis } from 'ioredis';
import { now } from './clock.js';

/** Counters of a redis-server at one moment, from `INFO`. */
export interface RedisUsage {
  /** When it was read, on the shared monotonic clock. */
  at: number;
  /** Every command Redis has run (`total_commands_processed`: those a script calls included). */
  commands: number;
  /** Script calls (`EVAL` and `EVALSHA`) clients have made. */
  scriptCalls: number;
  /** Time Redis spent running those scripts, in ms (`INFO commandstats`: execution only, no I/O). */
  scriptMs: number;
  /** User plus system CPU time of the server, in ms (`used_cpu_*`, from getrusage: finer than /proc's 10 ms ticks). */
  cpuMs: number;
}

/** Per second between two readings of the same server. */
export interface RedisUsageRate {
  windowMs: number;
  commandsPerSec: number;
  scriptCallsPerSec: number;
  scriptMsPerSec: number;
  cpuMsPerSec: number;
}

/** Reads the counters with one `INFO` (itself one command, left out of the rates). */
export async function readRedisUsage(admin: Redis): Promise<RedisUsage> {
  const info = String(await admin.call('INFO', 'stats', 'cpu', 'commandstats'));
  const at = now();
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  const stat = (command: string, name: 'calls' | 'usec'): number =>
    Number(new RegExp(`^cmdstat_${command}:.*\\b${name}=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return {
    at,
    commands: field('total_commands_processed'),
    scriptCalls: stat('eval', 'calls') + stat('evalsha', 'calls'),
    scriptMs: (stat('eval', 'usec') + stat('evalsha', 'usec')) / 1000,
    cpuMs: (field('used_cpu_user') + field('used_cpu_sys')) * 1000,
  };
}

/** The rates from `before` to `after`, without the one `INFO` that read `before`. */
export function redisUsageRate(before: RedisUsage, after: RedisUsage): RedisUsageRate {
  const windowMs = after.at - before.at;
  const perSec = (value: number): number => (value * 1000) / windowMs;
  return {
    windowMs,
    commandsPerSec: perSec(after.commands - before.commands - 1),
    scriptCallsPerSec: perSec(after.scriptCalls - before.scriptCalls),
    scriptMsPerSec: perSec(after.scriptMs - before.scriptMs),
    cpuMsPerSec: perSec(after.cpuMs - before.cpuMs),
  };
}
