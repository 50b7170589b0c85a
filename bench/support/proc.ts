import { readFileSync } from 'node:fs';

/** Resident memory of a process, in bytes (from /proc). */
export function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : NaN;
}

/** User plus system CPU time a process has used so far, in milliseconds (from /proc). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat (utime, stime), counted here from field 3 on.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}
