import { serveRole, type RoleMethods } from './support/rpc.js';

/** Entry point of every benchmark child process: `node child.js <role> <config JSON>`. */
async function main(): Promise<void> {
  // An orchestrator that died must not leave its roles running.
  process.once('disconnect', () => process.exit(1));
  const [role, rawConfig] = process.argv.slice(2);
  const config = JSON.parse(rawConfig ?? '{}');
  let methods: RoleMethods;
  switch (role) {
    case 'library':
      methods = await (await import('./roles/library.js')).libraryRole(config);
      break;
    case 'raw-redis':
      methods = await (await import('./roles/raw-redis.js')).rawRedisRole(config);
      break;
    case 'bullmq':
      methods = await (await import('./roles/bullmq.js')).bullmqRole(config);
      break;
    case 'event-stream-client':
      methods = (await import('./roles/event-stream-client.js')).eventStreamClientRole();
      break;
    case 'raw-ndjson-relay':
      methods = await (await import('./roles/raw-ndjson-relay.js')).rawNdjsonRelayRole(config);
      break;
    case 'resumable-stream':
      methods = await (await import('./roles/resumable.js')).resumableRole(config);
      break;
    default:
      throw new Error(`unknown role ${role}`);
  }
  methods.collectGarbage = () => (globalThis as { gc?: () => void }).gc?.();
  const close = methods.close;
  methods.close = (async () => {
    await close?.(undefined as never);
    setTimeout(() => process.exit(0), 10).unref();
  }) as RoleMethods[string];
  serveRole(methods);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
