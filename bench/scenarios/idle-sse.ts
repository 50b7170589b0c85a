import type { ChildProcess } from 'node:child_process';
import { request, type IncomingMessage } from 'node:http';
import { Redis } from 'ioredis';
import { now, sleep } from '../support/clock.js';
import { startDemoApi } from '../support/demo-api.js';
import { cpuMs, rssBytes } from '../support/proc.js';
import { quantile, round } from '../support/stats.js';

export interface IdleSseResult {
  followers: number;
  jobs: number;
  /** Redis connections the api process holds: before any follower, and with all of them. */
  redisConnections: { before: number; with: number };
  /** Resident memory of the api process, in MiB. */
  rssMiB: { before: number; with: number };
  /** Extra resident memory per follower, in KiB. */
  rssKiBPerFollower: number;
  /** Live JavaScript heap after a full GC, in MiB, and its growth per follower in KiB. */
  heapMiB: { before: number; with: number };
  heapKiBPerFollower: number;
  /** CPU the api process uses per second while its followers sit idle, in milliseconds. */
  idleCpuMsPerSec: number;
  /** From a cancel request to its `cancelled` event on the follower's SSE stream (other followers idle). */
  wakeLatencyMs: { samples: number; p50: number; max: number };
}

const PROBE = new URL('../support/memory-probe.js', import.meta.url).href;

interface Follower {
  response: IncomingMessage;
  /** Resolves when the stream carried an event of this type. */
  waitFor(type: string): Promise<void>;
}

/**
 * The demo api (`dist/apps/api/main.js`, api only: no worker) with `followers` SSE clients on as
 * many queued jobs: what do idle followers cost it in Redis connections, memory and CPU, and does
 * an event still reach its follower at once?
 */
export async function idleSse(options: { redisUrl: string; followers: number; log(line: string): void }): Promise<IdleSseResult> {
  const admin = new Redis(options.redisUrl, { connectionName: 'bench-admin' });
  await admin.flushall();
  const demo = await startDemoApi({ redisUrl: options.redisUrl, prefix: 'bench-sse', execArgv: ['--expose-gc', '--import', PROBE] });
  const { child: api, port } = demo;
  const followers: Follower[] = [];
  try {
    const probe = memoryProbe(api);
    const apiConnections = async (): Promise<number> =>
      String(await admin.client('LIST'))
        .split('\n')
        .filter((line) => line && !/ name=bench-admin /.test(line)).length;

    const post = (path: string, body: unknown): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const payload = JSON.stringify(body);
        const req = request(
          // One connection per request (agent: false): no reuse of a keep-alive socket the server is closing.
          {
            host: '127.0.0.1',
            port,
            path,
            method: 'POST',
            agent: false,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (text += chunk));
            res.on('end', () => resolve({ status: res.statusCode!, body: text }));
          },
        );
        req.on('error', reject);
        req.end(payload);
      });

    await sleep(1000);
    const before = { rss: rssBytes(api.pid!), connections: await apiConnections() };

    // Queued builds: no worker runs them, so their followers stay idle.
    const ids: string[] = [];
    for (let i = 0; i < options.followers; i += 25) {
      const created = await Promise.all(Array.from({ length: Math.min(25, options.followers - i) }, () => post('/builds', { steps: 1 })));
      for (const { status, body } of created) {
        if (status !== 202) throw new Error(`POST /builds answered ${status}: ${body}`);
        ids.push((JSON.parse(body) as { jobId: string }).jobId);
      }
    }
    await sleep(1000);
    const rssJobsOnly = rssBytes(api.pid!);
    const heapJobsOnly = await probe.heapUsed();

    for (let i = 0; i < ids.length; i += 50) followers.push(...(await Promise.all(ids.slice(i, i + 50).map((id) => follow(port, id)))));
    await sleep(3000);
    const withFollowers = { rss: rssBytes(api.pid!), connections: await apiConnections(), heap: await probe.heapUsed() };
    const cpuBefore = cpuMs(api.pid!);
    const idleStart = now();
    await sleep(5000);
    const idleCpuMsPerSec = ((cpuMs(api.pid!) - cpuBefore) * 1000) / (now() - idleStart);

    // One event among 1000 idle followers: a cancel, from request to the follower's SSE event.
    const wake: number[] = [];
    for (let i = 0; i < 20; i++) {
      const follower = followers[i * Math.floor(followers.length / 20)];
      const id = ids[followers.indexOf(follower)];
      const start = now();
      const seen = follower.waitFor('cancelled');
      const { status } = await post(`/builds/${id}/cancel`, {});
      if (status !== 202) throw new Error(`cancel answered ${status}`);
      await seen;
      wake.push(now() - start);
    }

    const result: IdleSseResult = {
      followers: followers.length,
      jobs: ids.length,
      redisConnections: { before: before.connections, with: withFollowers.connections },
      rssMiB: { before: round(rssJobsOnly / 2 ** 20), with: round(withFollowers.rss / 2 ** 20) },
      rssKiBPerFollower: round((withFollowers.rss - rssJobsOnly) / 1024 / followers.length),
      heapMiB: { before: round(heapJobsOnly / 2 ** 20), with: round(withFollowers.heap / 2 ** 20) },
      heapKiBPerFollower: round((withFollowers.heap - heapJobsOnly) / 1024 / followers.length),
      idleCpuMsPerSec: round(idleCpuMsPerSec),
      wakeLatencyMs: { samples: wake.length, p50: round(quantile(wake, 0.5)), max: round(quantile(wake, 1)) },
    };
    options.log(
      `  ${result.followers} SSE followers: ${result.redisConnections.with} Redis connections (${result.redisConnections.before} before), ` +
        `RSS ${result.rssMiB.before} -> ${result.rssMiB.with} MiB (${result.rssKiBPerFollower} KiB each), ` +
        `heap ${result.heapMiB.before} -> ${result.heapMiB.with} MiB (${result.heapKiBPerFollower} KiB each), idle CPU ${result.idleCpuMsPerSec} ms/s, ` +
        `cancel-to-event p50 ${result.wakeLatencyMs.p50} ms`,
    );
    return result;
  } finally {
    for (const follower of followers) follower.response.destroy();
    await demo.stop();
    admin.disconnect();
  }
}

/** Reads the live heap of the api, after a full GC, through the preloaded memory probe. */
function memoryProbe(api: ChildProcess): { heapUsed(): Promise<number> } {
  const waiters: Array<(heapUsed: number) => void> = [];
  api.on('message', (message: { memoryProbe?: NodeJS.MemoryUsage }) => {
    if (message.memoryProbe) waiters.shift()?.(message.memoryProbe.heapUsed);
  });
  return {
    heapUsed: () =>
      new Promise((resolve) => {
        waiters.push(resolve);
        api.send('memory-probe');
      }),
  };
}

function follow(port: number, id: string): Promise<Follower> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: `/builds/${id}/events`, agent: false, headers: { accept: 'text/event-stream' } },
      (response) => {
        if (response.statusCode !== 200) {
          reject(new Error(`GET /builds/${id}/events answered ${response.statusCode}`));
          response.resume();
          return;
        }
        let text = '';
        const waiters: Array<{ type: string; resolve(): void }> = [];
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
          for (const waiter of [...waiters]) {
            if (text.includes(`event: ${waiter.type}\n`)) {
              waiters.splice(waiters.indexOf(waiter), 1);
              waiter.resolve();
            }
          }
        });
        response.on('error', () => undefined);
        resolve({
          response,
          waitFor: (type) =>
            text.includes(`event: ${type}\n`) ? Promise.resolve() : new Promise((done) => waiters.push({ type, resolve: done })),
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}
