import { pageCost } from './scenarios/page-cost.js';
import { BenchRedis } from './support/redis-server.js';

/**
 * The cost of one bridged page (`updateProgress` + `log`) against plain BullMQ's, alone (not part
 * of `npm run bench`): `npm run build && npx tsc -b bench && node dist/bench/page-cost.js`.
 * `PAGES` (default 2000) pages per round, `ROUNDS` (default 3) rounds per contender, in turns, on a
 * fresh redis-server.
 */
async function main(): Promise<void> {
  const redis = await BenchRedis.start();
  try {
    const result = await pageCost({
      redisUrl: redis.url,
      pages: Number(process.env.PAGES) || 2000,
      rounds: Number(process.env.ROUNDS) || 3,
      log: (line) => console.log(line),
    });
    console.table(result.summary);
  } finally {
    await redis.stop();
  }
}

await main();
