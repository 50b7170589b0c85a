// A fresh Nest application outside the repository, written in plain JavaScript (decorators
// applied by hand), that uses the packed library as any user would: its root export and the
// `/http` subpath. Prints the events of one job as JSON.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { JobHandler, JobQueue, JobQueueModule } from 'nestjs-job-streams';
import { JobEventStreamer } from 'nestjs-job-streams/http';

class Greeter {
  async greet(context) {
    await context.emit('hello', { to: context.data.name });
    return { greeted: context.data.name };
  }
}
JobHandler('greet')(Greeter.prototype, 'greet', Object.getOwnPropertyDescriptor(Greeter.prototype, 'greet'));
Injectable()(Greeter);

class FreshAppModule {}
Module({
  imports: [JobQueueModule.forRoot({ backend: process.env.BACKEND, redis: { url: process.env.REDIS_URL, prefix: 'fresh' } })],
  providers: [Greeter],
})(FreshAppModule);

const app = await NestFactory.createApplicationContext(FreshAppModule, { logger: false });
await app.init();
if (typeof app.get(JobEventStreamer).sse !== 'function') throw new Error('the /http subpath gave no JobEventStreamer');
const queue = app.get(JobQueue);
const job = await queue.enqueue('greet', { name: 'tarball' }, { owner: 'fresh' });
const events = [];
for await (const event of queue.follow(job.id, { owner: 'fresh' })) events.push([event.type, event.data]);
await app.close();
console.log(JSON.stringify({ backend: queue.backend, events }));
