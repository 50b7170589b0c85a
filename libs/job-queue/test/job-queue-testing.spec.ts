import 'reflect-metadata';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Controller, Inject, Injectable, Post } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import type { Job } from 'bullmq';
import { JobHandler, JobQueue, JobQueueTesting, JobQueueTestingModule, type JobContext } from 'nestjs-job-streams';

/** An app's handler and controller, as a team writes them (see the README's "Use it in your own app"). */
@Injectable()
class ReportHandler {
  @JobHandler('report')
  async run(ctx: JobContext<{ pages: number }>): Promise<{ pages: number }> {
    for (let page = 1; page <= ctx.data.pages; page++) await ctx.emit('page', { page });
    return { pages: ctx.data.pages };
  }

  @JobHandler('stuck')
  async stuck(ctx: JobContext): Promise<void> {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
}

/** A `@nestjs/bullmq` processor of the app: on the memory backend it runs in the test too. */
@Processor('exports')
class ExportProcessor extends WorkerHost {
  async process(job: Job<{ rows: number }>): Promise<{ rows: number }> {
    await job.updateProgress({ done: job.data.rows });
    return { rows: job.data.rows };
  }
}

@Controller('reports')
class ReportsController {
  constructor(@Inject(JobQueue) private readonly queue: JobQueue) {}

  @Post()
  async start(): Promise<{ jobId: string }> {
    return { jobId: (await this.queue.enqueue('report', { pages: 3 }, { owner: 'alice' })).id };
  }
}

/** `JobQueueTestingModule`: a test of an app's controller and handler, without Redis. */
describe('JobQueueTestingModule', () => {
  let moduleRef: TestingModule | undefined;

  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
  });

  async function app(): Promise<TestingModule> {
    moduleRef = await Test.createTestingModule({
      imports: [JobQueueTestingModule.forRoot()],
      providers: [ReportHandler, ExportProcessor],
      controllers: [ReportsController],
    }).compile();
    await moduleRef.init();
    return moduleRef;
  }

  it("runs the app's handler in the test and awaits the job's end, with its events", async () => {
    const ref = await app();
    const { jobId } = await ref.get(ReportsController).start();
    const testing = ref.get(JobQueueTesting);
    const job = await testing.ended(jobId, { owner: 'alice' });
    expect(job).toMatchObject({ id: jobId, state: 'completed', result: { pages: 3 } });
    const events = await testing.eventsUntilEnd(jobId, { owner: 'alice' });
    expect(events.map((event) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ['page', { page: 1 }],
      ['page', { page: 2 }],
      ['page', { page: 3 }],
      ['completed', { result: { pages: 3 } }],
    ]);
  });

  it("runs the app's @Processor in the test as well", async () => {
    const ref = await app();
    const { id } = await ref.get(JobQueue).enqueue('export', { rows: 7 }, { queue: 'exports', owner: 'alice' });
    const events = await ref.get(JobQueueTesting).eventsUntilEnd(id, { queue: 'exports', owner: 'alice' });
    expect(events.map((event) => [event.type, event.data])).toEqual([
      ['started', { attempt: 1 }],
      ['progress', { done: 7 }],
      ['completed', { result: { rows: 7 } }],
    ]);
  });

  it('says which state a job is in when it does not end in time', async () => {
    const ref = await app();
    const { id } = await ref.get(JobQueue).enqueue('stuck', {}, { owner: 'alice' });
    await expect(ref.get(JobQueueTesting).ended(id, { owner: 'alice', timeoutMs: 200 })).rejects.toThrow(
      `Job ${id} did not end within 200 ms (it is running; 1 event(s) so far)`,
    );
  });
});
