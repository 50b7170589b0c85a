import { Controller, Get, Module, Param, Req, Res } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import type { Request, Response } from 'express';
import { JobQueueModule, JobQueueWorker, JobStreamsQueue } from 'nestjs-job-streams';
import { JobEventStreamer } from 'nestjs-job-streams/http';

BullModule.workerClass = JobQueueWorker; // @nestjs/bullmq's workers now bridge progress into streams
BullModule.queueClass = JobStreamsQueue; // and @InjectQueue's adds give each job its stream at once

@Controller('reports')
export class ReportEventsController {
  constructor(private readonly streamer: JobEventStreamer) {}

  /** Any instance serves any report's events: SSE, resumable with Last-Event-ID. */
  @Get(':id/events')
  events(@Param('id') id: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.streamer.sse(id, req, res, { queue: 'reports' }); // no owner: jobs added with plain BullMQ have none
  }
}

@Module({
  imports: [
    BullModule.forRoot({ connection: { url: 'redis://127.0.0.1:6379' }, prefix: 'jq' }),
    BullModule.registerQueue({ name: 'reports' }), // and your @Processor('reports') classes, unchanged
    JobQueueModule.forRoot({ backend: 'bullmq' }), // connection and prefix from BullModule.forRoot
  ],
  controllers: [ReportEventsController],
})
export class AppModule {}
