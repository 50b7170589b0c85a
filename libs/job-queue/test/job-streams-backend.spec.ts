import { describe, expect, it } from '@jest/globals';
import { IncompatibleBullMqError } from 'nestjs-job-streams';
import { checkBullCommands, installedBullCommands } from '../src/backends/bullmq/bullmq-commands.js';

describe("the installed bullmq's commands (no Redis)", () => {
  const real = installedBullCommands();

  it('are taken from the installed package and fit the shape the backend composes with', () => {
    expect(real.version).toMatch(/^6\./);
    expect(real.commands.updateProgress).toMatchObject({ name: 'updateProgress', keys: 3, args: 2 });
    expect(real.commands.addLog).toMatchObject({ name: 'addLog', keys: 2, args: 3 });
    expect(real.commands.updateProgress.content).toMatch(/^--\[\[/);
  });

  /** BullMQ's scripts as the real package ships them, with one command replaced (or removed, with `undefined`). */
  const scriptsWith = (name: 'updateProgress' | 'addLog', script: unknown): Record<string, unknown> => ({
    updateProgress: real.commands.updateProgress,
    addLog: real.commands.addLog,
    [name]: script,
  });

  const refusal = (scripts: Record<string, unknown>): IncompatibleBullMqError => {
    try {
      checkBullCommands(scripts, '6.99.0');
    } catch (error) {
      return error as IncompatibleBullMqError;
    }
    throw new Error('The scripts were taken');
  };

  it('stop start-up with an error naming the version and the command when a command is missing', () => {
    const error = refusal(scriptsWith('addLog', undefined));
    expect(error).toBeInstanceOf(IncompatibleBullMqError);
    expect(error.code).toBe('INCOMPATIBLE_BULLMQ');
    expect(error).toMatchObject({ bullmqVersion: '6.99.0', command: 'addLog' });
    expect(error.message).toMatch(/^bullmq 6\.99\.0: its "addLog" command is missing/);
  });

  it('... when a command takes another number of keys', () => {
    const updateProgress = real.commands.updateProgress;
    const error = refusal(scriptsWith('updateProgress', { ...updateProgress, keys: 4 }));
    expect(error).toMatchObject({ command: 'updateProgress' });
    expect(error.message).toMatch(/"updateProgress" command takes 4 keys, not 3/);
  });

  it('... when its Lua reads other keys or arguments than the shape says', () => {
    const addLog = real.commands.addLog;
    const moreArgs = { ...addLog, content: addLog.content.replace('ARGV[3]', 'ARGV[4]') };
    expect(refusal(scriptsWith('addLog', moreArgs)).message).toMatch(
      /reads KEYS\[1\.\.2\] and ARGV\[1\.\.4\], not KEYS\[1\.\.2\] and ARGV\[1\.\.3\]/,
    );
    const updateProgress = real.commands.updateProgress;
    const moreKeys = { ...updateProgress, content: `${updateProgress.content}\nredis.call('DEL', KEYS[4])\n` };
    expect(refusal(scriptsWith('updateProgress', moreKeys)).message).toMatch(/reads KEYS\[1\.\.4\]/);
  });

  it('... when a command is not a plain script (a flags line cannot be wrapped in a function)', () => {
    const addLog = real.commands.addLog;
    const error = refusal(scriptsWith('addLog', { ...addLog, content: `#!lua flags=no-writes\n${addLog.content}` }));
    expect(error.message).toMatch(/"addLog" command does not start with its header comment/);
  });

  it('... when its name in the scripts is another', () => {
    expect(refusal(scriptsWith('updateProgress', { ...real.commands.addLog })).message).toMatch(
      /"updateProgress" command is named "addLog"/,
    );
  });
});
