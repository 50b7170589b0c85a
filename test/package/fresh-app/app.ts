// A Nest application outside the repository, written as the README of nestjs-job-streams shows
// and compiled with its own TypeScript, that uses the packed library as a user would. One
// `@nestjs/bullmq` processor, jobs added with plain `queue.add`, SSE served by the library's
// `JobEventStreamer`, cancel; the optional `/terminus` and `/metrics` subpaths with their peers.
// `ROLE` picks what this process is:
// - `worker`: `bullmq` backend, runs the processor, serves nothing;
// - `api`: `bullmq` backend, serves HTTP on `PORT`, runs no processor;
// - `memory`: `memory` backend, both in this one process (no Redis).
// The `bullmq` roles connect to `REDIS_URL`.
// HTTP: `POST /reports` `{ pages, holdAfterPage? }` -> 202 `{ jobId }`;
// `GET /reports/:id/events[?after=]` -> SSE; `POST /reports/:id/cancel` -> 202 `{ cancelled: true }`;
// `GET /health` -> terminus' answer with the job queue indicator; `GET /metrics` -> Prometheus text.
import 'reflect-metadata';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Body, Controller, Get, HttpCode, Injectable, Module, Param, Post, Query, Req, Res, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, NestFactory } from '@nestjs/core';
import { BullModule, InjectQueue, Processor, WorkerHost } from '@nestjs/bullmq';
import { HealthCheck, HealthCheckService, TerminusModule, type HealthCheckResult } from '@nestjs/terminus';
import type { Job, Queue } from 'bullmq';
import { Registry } from 'prom-client';
import { JobQueue, JobQueueModule, JobQueueWorker, bullModuleConnection, type JobAccessOptions } from 'nestjs-job-streams';
import { JobEventStreamer, JobQueueExceptionFilter } from 'nestjs-job-streams/http';
import { JobQueueMetricsModule } from 'nestjs-job-streams/metrics';
import { JobQueueHealthIndicator } from 'nestjs-job-streams/terminus';

// Before any registerQueue runs: the workers @nestjs/bullmq makes put each job's progress into its stream.
BullModule.workerClass = JobQueueWorker;

const REPORTS = 'reports';
/** The owner of the jobs the `memory` role enqueues through `JobQueue` (jobs added with plain BullMQ have none). */
const OWNER = 'fresh-app';

interface ReportData {
  pages: number;
  /** After reporting this page, wait until the job is cancelled. */
  holdAfterPage?: number;
}

/** Settles only when `signal` aborts, rejecting with its reason. */
function cancelled(signal: AbortSignal | undefined): Promise<never> {
  if (!signal) return Promise.reject(new Error('the processor was given no AbortSignal'));
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** A plain @nestjs/bullmq processor: it knows nothing of nestjs-job-streams. */
@Processor(REPORTS)
export class ReportProcessor extends WorkerHost {
  async process(job: Job<ReportData>, _token?: string, signal?: AbortSignal): Promise<{ pages: number }> {
    const { pages, holdAfterPage } = job.data;
    for (let page = 1; page <= pages; page++) {
      await job.updateProgress({ page, pages });
      await job.log(`page ${page} of ${pages}`);
      if (page === holdAfterPage) await cancelled(signal);
    }
    return { pages };
  }
}

/** How the api adds a report, and who reads it. */
abstract class ReportJobs {
  abstract readonly access: JobAccessOptions;
  abstract add(data: ReportData): Promise<string>;
}

/** `bullmq`: plain `queue.add`, as the app did before the module; such jobs have no owner. */
@Injectable()
class BullReportJobs extends ReportJobs {
  readonly access: JobAccessOptions = { queue: REPORTS };

  constructor(@InjectQueue(REPORTS) private readonly queue: Queue<ReportData>) {
    super();
  }

  async add(data: ReportData): Promise<string> {
    const job = await this.queue.add('report', data);
    if (job.id === undefined) throw new Error('BullMQ gave the job no id');
    return job.id;
  }
}

/** `memory`: no BullMQ queue to inject; `JobQueue.enqueue` to the processor's queue. */
@Injectable()
class MemoryReportJobs extends ReportJobs {
  readonly access: JobAccessOptions = { queue: REPORTS, owner: OWNER };

  constructor(private readonly jobs: JobQueue) {
    super();
  }

  async add(data: ReportData): Promise<string> {
    return (await this.jobs.enqueue('report', data, { queue: REPORTS, owner: OWNER })).id;
  }
}

@Controller(REPORTS)
class ReportsController {
  constructor(
    private readonly reports: ReportJobs,
    private readonly jobs: JobQueue,
    private readonly streamer: JobEventStreamer,
  ) {}

  @Post()
  @HttpCode(202)
  async add(@Body() body: ReportData): Promise<{ jobId: string }> {
    return { jobId: await this.reports.add({ pages: body.pages, holdAfterPage: body.holdAfterPage }) };
  }

  @Get(':id/events')
  async events(
    @Param('id') id: string,
    @Query('after') after: string | undefined,
    @Req() request: IncomingMessage,
    @Res() response: ServerResponse,
  ): Promise<void> {
    await this.streamer.sse(id, request, response, { ...this.reports.access, after });
  }

  @Post(':id/cancel')
  @HttpCode(202)
  async cancel(@Param('id') id: string): Promise<{ cancelled: true }> {
    await this.jobs.cancel(id, this.reports.access);
    return { cancelled: true };
  }
}

const registry = new Registry();

@Controller()
class OpsController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly jobQueue: JobQueueHealthIndicator,
  ) {}

  @Get('health')
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.jobQueue.isHealthy('jobQueue')]);
  }

  @Get('metrics')
  async metrics(@Res() response: ServerResponse): Promise<void> {
    response.writeHead(200, { 'Content-Type': registry.contentType }).end(await registry.metrics());
  }
}

type Role = 'api' | 'worker' | 'memory';

function appModule(role: Role): DynamicModule {
  const http = {
    imports: [TerminusModule.forRoot(), JobQueueMetricsModule.forRoot({ registry })],
    controllers: [ReportsController, OpsController],
    providers: [JobQueueHealthIndicator, { provide: APP_FILTER, useClass: JobQueueExceptionFilter }],
  };
  if (role === 'memory') {
    return {
      module: FreshAppModule,
      imports: [JobQueueModule.forRoot({ backend: 'memory' }), ...http.imports],
      controllers: http.controllers,
      providers: [ReportProcessor, { provide: ReportJobs, useClass: MemoryReportJobs }, ...http.providers],
    };
  }
  const bull = [
    BullModule.forRootAsync({
      useFactory: async () => ({ connection: await bullModuleConnection(process.env.REDIS_URL ?? ''), prefix: 'fresh' }),
    }),
    BullModule.registerQueue({ name: REPORTS }),
    // Redis URL and key prefix come from BullModule.forRoot.
    JobQueueModule.forRoot({ backend: 'bullmq', worker: role === 'worker' }),
  ];
  if (role === 'worker') return { module: FreshAppModule, imports: bull, providers: [ReportProcessor] };
  return {
    module: FreshAppModule,
    imports: [...bull, ...http.imports],
    controllers: http.controllers,
    providers: [{ provide: ReportJobs, useClass: BullReportJobs }, ...http.providers],
  };
}

@Module({})
class FreshAppModule {}

const role = process.env.ROLE;
if (role !== 'api' && role !== 'worker' && role !== 'memory') throw new Error(`ROLE must be api, worker or memory (got ${role})`);
if (role === 'worker') {
  const worker = await NestFactory.createApplicationContext(appModule(role), { logger: ['error', 'warn'] });
  worker.enableShutdownHooks();
  await worker.init();
  console.log('fresh-app worker running');
} else {
  const api = await NestFactory.create(appModule(role), { logger: ['error', 'warn'] });
  api.enableShutdownHooks();
  await api.listen(Number(process.env.PORT), '127.0.0.1');
  console.log(`fresh-app ${role} listening on ${await api.getUrl()}`);
}
