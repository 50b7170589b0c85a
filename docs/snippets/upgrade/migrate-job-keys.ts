import { Redis } from 'ioredis';
import { migrateJobKeys, redisClusterClient } from 'nestjs-job-streams';

// The deployment's Redis and key prefix: here the variables (and defaults) of the module's env options.
const nodes = process.env.REDIS_CLUSTER_NODES?.split(',');
const client = nodes
  ? redisClusterClient(nodes, { connectionName: 'migrate-job-keys' })
  : new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { connectionName: 'migrate-job-keys' });
try {
  const { jobs, skipped } = await migrateJobKeys(client, { prefix: process.env.JOB_QUEUE_PREFIX ?? (nodes ? '{jq}' : 'jq') });
  console.log(`moved the keys of ${jobs} jobs; ${skipped} skipped (the new version had them already)`);
} finally {
  client.disconnect();
}
