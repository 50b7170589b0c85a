import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { WorkerModule } from './worker.module.js';

async function bootstrap(): Promise<void> {
  const backend = process.env.JOB_QUEUE_BACKEND || 'memory';
  if (backend === 'memory') {
    throw new Error(
      'The worker needs a shared backend: set JOB_QUEUE_BACKEND=bullmq (with the in-memory backend the api runs its own jobs)',
    );
  }
  const app = await NestFactory.createApplicationContext(WorkerModule, { abortOnError: false });
  // On SIGTERM/SIGINT: finish or hand back running jobs (JOB_SHUTDOWN_GRACE_MS), then exit 0
  // rather than re-raising the signal (Nest's default, which reads as a crash: exit 143).
  app.enableShutdownHooks([], { useProcessExit: true });
  await app.init();
  Logger.log(`Worker running (backend ${backend})`, 'Bootstrap');
}

bootstrap().catch((error: unknown) => {
  console.error(`The worker failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
