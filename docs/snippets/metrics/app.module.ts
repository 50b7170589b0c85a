import { Controller, Get, Header, Module } from '@nestjs/common';
import { JobQueueModule } from 'nestjs-job-streams';
import { JobQueueMetricsModule } from 'nestjs-job-streams/metrics';
import { register } from 'prom-client';

@Controller('metrics')
export class MetricsController {
  @Get()
  @Header('Content-Type', register.contentType)
  metrics(): Promise<string> {
    return register.metrics();
  }
}

@Module({
  imports: [JobQueueModule.forRoot({ backend: 'bullmq' }), JobQueueMetricsModule.forRoot()], // default: prom-client's global register
  controllers: [MetricsController],
})
export class AppModule {}
