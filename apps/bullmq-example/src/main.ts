import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

/** `APP_ROLE=api` (default) listens on `PORT` (3000); `APP_ROLE=worker` runs the report processor. */
async function bootstrap(): Promise<void> {
  const role = process.env.APP_ROLE || 'api';
  if (role !== 'api' && role !== 'worker') throw new Error(`APP_ROLE must be api or worker (got ${JSON.stringify(role)})`);
  if (role === 'worker') {
    const worker = await NestFactory.createApplicationContext(AppModule.forRole('worker'), { abortOnError: false });
    worker.enableShutdownHooks();
    await worker.init();
    Logger.log('Report worker running', 'Bootstrap');
  } else {
    const api = await NestFactory.create(AppModule.forRole('api'), { abortOnError: false });
    api.enableShutdownHooks();
    await api.listen(Number(process.env.PORT || 3000));
    Logger.log(`Report API listening on ${await api.getUrl()}`, 'Bootstrap');
  }
}

bootstrap().catch((error: unknown) => {
  console.error(`The ${process.env.APP_ROLE || 'api'} failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
