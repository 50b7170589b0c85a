import { Controller, Get, Inject, Injectable, Module, Param, Post, Req, Res } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { APP_FILTER } from '@nestjs/core';
import type { Request, Response } from 'express';
import {
  JobEventStreamer,
  JobHandler,
  JobQueue,
  JobQueueExceptionFilter,
  JobQueueModule,
  jobQueueOptionsFromEnv,
  type JobContext,
} from 'nestjs-job-streams';

@Injectable()
export class ReportHandler {
  @JobHandler('report')
  async run(ctx: JobContext<{ month: string }>): Promise<{ url: string }> {
    for (let page = 1; page <= 10; page++) {
      ctx.signal.throwIfAborted(); // fires on cancel, from any instance
      await ctx.emit('page', { page });
    }
    return { url: `/reports/${ctx.data.month}.pdf` };
  }
}

@Controller('reports')
export class ReportsController {
  constructor(
    @Inject(JobQueue) private readonly queue: JobQueue,
    @Inject(JobEventStreamer) private readonly streamer: JobEventStreamer,
  ) {}

  @Post()
  async start(): Promise<{ jobId: string }> {
    const job = await this.queue.enqueue('report', { month: '2026-11' }, { owner: 'alice', attempts: 3, backoffMs: 5_000 });
    return { jobId: job.id };
  }

  @Get(':id/events')
  events(@Param('id') id: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.streamer.sse(id, req, res, { owner: 'alice' }); // resume, heartbeats, disconnects handled
  }
}

@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true }),
    // JOB_QUEUE_BACKEND=memory|bullmq, REDIS_URL, JOB_QUEUE_PREFIX, ... (see Configuration)
    JobQueueModule.forRootAsync({ inject: [ConfigService], useFactory: jobQueueOptionsFromEnv }),
  ],
  providers: [
    ReportHandler,
    { provide: APP_FILTER, useClass: JobQueueExceptionFilter }, // typed errors as HTTP answers: 404, 400, 409, 503
  ],
  controllers: [ReportsController],
})
export class AppModule {}
