import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { AppProcess } from '../support/app-process.js';
import { BuildApi, assertOrderedStream, expectedBuildEvents, readLines, typesAndData, type WireEvent } from '../support/build-api.js';
import { inboundConnections } from '../support/inbound-connections.js';
import { NginxBalancer } from '../support/nginx-balancer.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * The demo's live page in headless Chromium (Debian's `chromium`, driven by puppeteer-core over
 * the DevTools protocol; nothing downloads a browser), through nginx balancing two apis round
 * robin, with a worker and Redis: the page follows a build while the api serving its event stream
 * is SIGKILLed, and still shows every event once, in order.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TOKEN = 'tokenA-live-7a7a';
const STEPS = 40;
const TOKENS_PER_STEP = 2;

interface ShownEvent {
  id: string;
  type: string;
  text: string;
}

const shownEvents = (page: Page): Promise<ShownEvent[]> =>
  page.$$eval('#events li', (items) => items.map((item) => ({ id: item.dataset.id!, type: item.dataset.type!, text: item.textContent! })));

/** Waits (bounded) until the page shows at least `count` events, or one of `type`. */
async function waitForShown(page: Page, predicate: string, timeoutMs = 30_000): Promise<void> {
  await page.waitForFunction(predicate, { timeout: timeoutMs, polling: 50 });
}

describe('live page in headless Chromium behind nginx (2 apis, 1 worker, bullmq)', () => {
  let redis: RedisServer | undefined;
  let nginx: NginxBalancer | undefined;
  let browser: Browser | undefined;
  const processes: AppProcess[] = [];
  let profile: string;

  beforeAll(async () => {
    redis = await RedisServer.start();
    profile = mkdtempSync(join(tmpdir(), 'jq-chromium-'));
  });

  afterAll(async () => {
    await browser?.close();
    await nginx?.stop();
    await Promise.all(processes.map((app) => app.stop('SIGTERM', 5000)));
    await redis?.destroy();
    rmSync(profile, { recursive: true, force: true });
  }, 30_000);

  it('follows a build while the api serving its stream is killed (its ticket expired by then): every event once, in order; no token in any logged URL', async () => {
    const env = {
      JOB_QUEUE_BACKEND: 'bullmq',
      REDIS_URL: redis!.url,
      JOB_QUEUE_PREFIX: `live-${randomUUID().slice(0, 8)}`,
      AUTH_TOKENS: `alice:${TOKEN}`,
      // Short-lived tickets: by the time the api is killed the page's ticket has expired, so its
      // EventSource is refused on reconnect and the page must resume with a new ticket.
      STREAM_TICKET_TTL_MS: '1000',
    };
    const apis = await AppProcess.startAll(processes, [
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.api({ ...env, JOB_QUEUE_WORKER: 'false' }),
      AppProcess.worker(env),
    ]).then((started) => started.slice(0, 2));
    nginx = await NginxBalancer.start(apis.map((api) => api.port!));
    browser = await puppeteer.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      headless: true,
      userDataDir: profile,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    });
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 900 });
    // The fragment is never sent to a server; the page keeps the token for this tab only.
    await page.goto(`${nginx.url}/#token=${TOKEN}`);
    expect(await page.$eval('#token', (input) => (input as unknown as { value: string }).value)).toBe(TOKEN);
    for (const [field, value] of [
      ['#steps', STEPS],
      ['#stepMs', 200],
      ['#tokensPerStep', TOKENS_PER_STEP],
    ] as const) {
      await page.$eval(field, (input, text) => ((input as unknown as { value: string }).value = text), String(value));
    }
    await page.click('#go');
    await waitForShown(page, `document.querySelectorAll('#events li[data-type="step"]').length >= 5`);
    const jobId = await page.$eval('#job-id', (element) => element.textContent!);

    // The api holding the page's event stream: the one with an established connection from nginx
    // in every sample (the page's state requests are short; the stream stays).
    let serving: AppProcess | undefined;
    for (let tries = 0; !serving && tries < 50; tries++) {
      const samples: number[][] = [];
      for (let sample = 0; sample < 5; sample++) {
        samples.push(apis.map((api) => inboundConnections(api.pid, api.port!)));
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
      const holding = apis.filter((_, index) => samples.every((counts) => counts[index] > 0));
      if (holding.length === 1) serving = holding[0];
    }
    expect(serving).toBeDefined();
    const survivor = apis.find((api) => api !== serving)!;
    const shownBeforeKill = (await shownEvents(page)).length;
    await serving!.stop('SIGKILL');

    await waitForShown(page, `document.querySelector('#events li[data-type="completed"]') !== null`, 60_000);
    await waitForShown(page, `document.querySelector('#job-state').textContent === 'completed'`);
    const shown = await shownEvents(page);
    expect(shown.length).toBeGreaterThan(shownBeforeKill);
    expect(Number(await page.$eval('#reconnects', (element) => element.textContent))).toBeGreaterThanOrEqual(1);

    // What the page shows is exactly the job's stream, as the surviving api serves it.
    const api = new BuildApi(survivor.url, 'surviving api');
    const all: WireEvent[] = [];
    for await (const line of readLines(await api.fetch(`/builds/${jobId}/events`, { headers: { Authorization: `Bearer ${TOKEN}` } }))) {
      all.push(JSON.parse(line) as WireEvent);
    }
    assertOrderedStream(all, 'build');
    expect(typesAndData(all)).toEqual(expectedBuildEvents(STEPS, TOKENS_PER_STEP));
    expect(shown).toEqual(all.map((event) => ({ id: event.id, type: event.type, text: `${event.type} ${JSON.stringify(event.data)}` })));

    // The event stream went through a ticket; the token went in headers only.
    const log = nginx.accessLog();
    expect(log).toContain(`/builds/${jobId}/events?ticket=`);
    expect(log).not.toContain(TOKEN);

    const screenshots = process.env.UPDATE_SCREENSHOT === '1' ? join(ROOT, 'docs') : join(ROOT, '.test-tmp');
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: join(screenshots, 'live-page.png') });
  }, 120_000);

  it('takes the token from ?token= too, and removes it from the address bar', async () => {
    const page = await browser!.newPage();
    await page.goto(`${nginx!.url}/?token=${TOKEN}`);
    expect(await page.$eval('#token', (input) => (input as unknown as { value: string }).value)).toBe(TOKEN);
    expect(new URL(page.url()).search).toBe('');
    await page.close();
  });
});
