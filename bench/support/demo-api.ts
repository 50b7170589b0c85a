import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis-server.js';

const API = fileURLToPath(new URL('../../apps/api/main.js', import.meta.url));

/** The built demo api (`dist/apps/api/main.js`) as a process of the benchmark. */
export interface DemoApi {
  child: ChildProcess;
  port: number;
  url: string;
  /** SIGTERM, then SIGKILL after 15 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

/**
 * Starts the demo api, api only (`JOB_QUEUE_WORKER=false`, BullMQ backend, development mode: no
 * auth, every caller is `anonymous`), on a free port; resolves once it listens. `execArgv` goes
 * before the script (e.g. `--import` of a probe, which then gets an IPC channel).
 */
export async function startDemoApi(options: { redisUrl: string; prefix: string; execArgv?: string[] }): Promise<DemoApi> {
  const port = await freePort();
  const child = spawn(process.execPath, [...(options.execArgv ?? []), API], {
    env: {
      ...process.env,
      PORT: String(port),
      JOB_QUEUE_BACKEND: 'bullmq',
      JOB_QUEUE_WORKER: 'false',
      REDIS_URL: options.redisUrl,
      JOB_QUEUE_PREFIX: options.prefix,
      AUTH_TOKENS: '',
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForListening(child);
  } catch (error) {
    await stop();
    throw error;
  }
  return { child, port, url: `http://127.0.0.1:${port}`, stop };
}

function waitForListening(api: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`the api did not start:\n${output}`)), 30_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (/listening on port/i.test(output)) {
        clearTimeout(timer);
        api.stdout!.off('data', onData);
        api.stderr!.off('data', onData);
        api.stdout!.resume();
        api.stderr!.resume();
        resolve();
      }
    };
    api.stdout!.on('data', onData);
    api.stderr!.on('data', onData);
    api.once('exit', (code) => reject(new Error(`the api exited (${code}):\n${output}`)));
  });
}
