import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApiApp } from './create-api-app.js';

async function bootstrap(): Promise<void> {
  const raw = process.env.PORT ?? '3000';
  const port = Number(raw);
  if (!/^[0-9]+$/.test(raw) || port > 65535) throw new Error(`PORT must be an integer from 0 to 65535 (got ${JSON.stringify(raw)})`);
  const app = await createApiApp();
  await app.listen(port);
  const address = app.getHttpServer().address();
  Logger.log(`Build API listening on port ${typeof address === 'object' && address ? address.port : port}`, 'Bootstrap');
}

bootstrap().catch((error: unknown) => {
  // One clear line, then a non-zero exit: a half-started API must not linger.
  console.error(`The API failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
