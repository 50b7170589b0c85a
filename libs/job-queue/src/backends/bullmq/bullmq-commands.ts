import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { IncompatibleBullMqError } from '../../errors/incompatible-bullmq.error.js';

/** One of BullMQ's Lua scripts as the package ships it: its includes resolved, its key count. */
export interface BullScript {
  name: string;
  content: string;
  keys: number;
}

/**
 * The BullMQ commands whose scripts the module runs together with a write of its own, and the
 * shape it relies on: how many keys and arguments BullMQ passes. `updateProgress` and `addLog`
 * (the job id is their first argument; success is a number >= 0) get the job's stream write; the
 * adds BullMQ's `Queue` sends for a job the module enqueues (success is the job id; an error is a
 * number < 0) get the job's metadata; `moveToFinished` (the job id is its first argument; an
 * error is a number < 0) gets the job's terminal event; `moveToActive` and `moveToFinished` (their
 * reply, when they give the worker a job, is `[job fields, job id, ...]`; the key prefix of the
 * queue is the first argument of `moveToActive`, the seventh of `moveToFinished`) get the start of
 * the attempt of the job they give the worker.
 */
export const COMPOSED_COMMANDS = {
  updateProgress: { keys: 3, args: 2 },
  addLog: { keys: 2, args: 3 },
  addStandardJob: { keys: 9, args: 3 },
  addDelayedJob: { keys: 6, args: 3 },
  addPrioritizedJob: { keys: 9, args: 3 },
  moveToActive: { keys: 11, args: 3 },
  moveToFinished: { keys: 14, args: 9 },
} as const;

/** The adds of {@link COMPOSED_COMMANDS}: the module composes them with a new job's metadata. */
export const COMPOSED_ADDS = ['addStandardJob', 'addDelayedJob', 'addPrioritizedJob'] as const;

/** The name of a command in {@link COMPOSED_COMMANDS}. */
export type ComposedCommand = keyof typeof COMPOSED_COMMANDS;

/** A BullMQ command checked against the shape the bridge relies on. */
export interface BullCommand extends BullScript {
  /** Arguments (ARGV) BullMQ passes after the keys. */
  args: number;
}

/** The checked commands of one installed `bullmq`. */
export interface BullCommands {
  /** The `bullmq` version, as BullMQ suffixes its command names with it. */
  version: string;
  commands: Record<ComposedCommand, BullCommand>;
}

/** The highest `<name>[n]` index the Lua text uses (0 when none). */
function highestIndex(lua: string, name: 'KEYS' | 'ARGV'): number {
  let highest = 0;
  for (const match of lua.matchAll(new RegExp(`\\b${name}\\[(\\d+)\\]`, 'g'))) highest = Math.max(highest, Number(match[1]));
  return highest;
}

/**
 * Checks BullMQ's `scripts` (what `bullmq`'s `scripts/index.js` exports) for every command of
 * {@link COMPOSED_COMMANDS}. Pure: no Redis, no file read. The checks are the cheap ones that
 * catch a changed command: it exists, it takes the same number of keys, its Lua reads exactly
 * those keys and arguments, by index only (the module's own follow them in a composed script),
 * and it is a plain script (a header comment, no `#!lua` flags line) that can run as the body of
 * a Lua function.
 *
 * @throws IncompatibleBullMqError naming `version` and the first command that does not fit.
 */
export function checkBullCommands(scripts: Readonly<Record<string, unknown>>, version: string): BullCommands {
  const commands = {} as Record<ComposedCommand, BullCommand>;
  for (const [name, shape] of Object.entries(COMPOSED_COMMANDS) as Array<[ComposedCommand, { keys: number; args: number }]>) {
    const script = scripts[name] as Partial<BullScript> | undefined;
    if (!script || typeof script !== 'object' || typeof script.content !== 'string' || typeof script.keys !== 'number') {
      throw new IncompatibleBullMqError(version, name, 'is missing from its scripts');
    }
    if (script.name !== name) throw new IncompatibleBullMqError(version, name, `is named "${String(script.name)}" in its scripts`);
    if (script.keys !== shape.keys) {
      throw new IncompatibleBullMqError(version, name, `takes ${script.keys} keys, not ${shape.keys}`);
    }
    const lua = script.content;
    if (!lua.trimStart().startsWith('--[[')) {
      throw new IncompatibleBullMqError(version, name, 'does not start with its header comment (a script with flags cannot be wrapped)');
    }
    // The module's keys and arguments follow BullMQ's: its script must read its own by index alone.
    const code = lua.replace(/--\[\[[\s\S]*?\]\]/g, '').replace(/--[^\n]*/g, '');
    if (/#\s*(KEYS|ARGV)\b|\b(KEYS|ARGV)\b(?!\s*\[)/.test(code)) {
      throw new IncompatibleBullMqError(version, name, 'reads KEYS or ARGV as a whole (their length, or the table itself)');
    }
    const keys = highestIndex(lua, 'KEYS');
    const args = highestIndex(lua, 'ARGV');
    if (keys !== shape.keys || args !== shape.args) {
      throw new IncompatibleBullMqError(
        version,
        name,
        `reads KEYS[1..${keys}] and ARGV[1..${args}], not KEYS[1..${shape.keys}] and ARGV[1..${shape.args}]`,
      );
    }
    commands[name] = { name, content: lua, keys: script.keys, args: shape.args };
  }
  return { version, commands };
}

let installed: BullCommands | undefined;
let installedScripts: Readonly<Record<string, unknown>> = {};

/**
 * How many keys the installed `bullmq`'s command `name` takes (its arguments follow them), for a
 * command the module reads but does not compose; `undefined` when the package lacks it.
 */
export function installedKeyCount(name: string): number | undefined {
  installedBullCommands();
  const keys = (installedScripts[name] as Partial<BullScript> | undefined)?.keys;
  return typeof keys === 'number' ? keys : undefined;
}

/**
 * The commands of the `bullmq` this process imports, read from the package at the first call and
 * checked (see {@link checkBullCommands}). The scripts are taken from the build next to the entry
 * point `bullmq` resolves to, so they are the ones its `Worker` runs: a BullMQ patch release is
 * composed as it is, never from a copy kept here.
 *
 * @throws IncompatibleBullMqError when a command is missing or has another shape.
 */
export function installedBullCommands(): BullCommands {
  if (!installed) {
    const require = createRequire(import.meta.url);
    const entry = dirname(require.resolve('bullmq'));
    let version = '(version unknown)';
    try {
      version = (require(join(entry, 'version.js')) as { version: string }).version;
    } catch {
      // Named as unknown in the error below, if a command does not fit.
    }
    let scripts: Record<string, unknown> = {};
    try {
      scripts = require(join(entry, 'scripts', 'index.js')) as Record<string, unknown>;
    } catch {
      // Checked below: every command is then missing, which the error says with the version.
    }
    installedScripts = scripts;
    installed = checkBullCommands(scripts, version);
  }
  return installed;
}
