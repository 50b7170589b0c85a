import type { ChildProcess } from 'node:child_process';

/**
 * Resolves when the child prints a line matching `pattern` on stdout or stderr; rejects when it
 * exits first or `timeoutMs` passes, with what it printed so far.
 */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number, label: string): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = pattern.exec(output);
      if (match) finish(() => resolve(match));
    };
    const onExit = (code: number | null, signal: string | null): void =>
      finish(() => reject(new Error(`${label} exited (${code ?? signal}) before printing ${pattern}:\n${output.slice(-4000)}`)));
    const timer = setTimeout(
      () => finish(() => reject(new Error(`${label} did not print ${pattern} within ${timeoutMs} ms:\n${output.slice(-4000)}`))),
      timeoutMs,
    );
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      settle();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}
