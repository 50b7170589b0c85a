import { createServer, type Server } from 'node:http';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { JobQueueMetrics } from 'nestjs-job-streams/metrics';

/**
 * `GET /metrics` of a worker process, on `METRICS_PORT` when it is set (a worker serves no API:
 * this port is for a Prometheus scraper only). The worker's metrics are the writes: events
 * appended, terminal states, append batch sizes, Redis errors and reconnects.
 */
@Injectable()
export class MetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('MetricsServer');
  private server?: Server;

  constructor(
    @Inject(ConfigService) private readonly config: ConfigService,
    @Inject(JobQueueMetrics) private readonly metrics: JobQueueMetrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const raw = this.config.get<string>('METRICS_PORT');
    if (raw === undefined || raw === '') return;
    const port = Number(raw);
    if (!/^[0-9]+$/.test(raw) || port > 65535)
      throw new Error(`METRICS_PORT must be an integer from 0 to 65535 (got ${JSON.stringify(raw)})`);
    const registry = this.metrics.registry;
    this.server = createServer((request, response) => {
      if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
        response
          .writeHead(404, { 'Content-Type': 'application/json' })
          .end(JSON.stringify({ statusCode: 404, error: 'Not Found', message: 'Only GET /metrics here' }));
        return;
      }
      registry.metrics().then(
        (text) => response.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, () => resolve());
    });
    const address = this.server.address();
    this.logger.log(`Metrics on port ${typeof address === 'object' && address ? address.port : port}`);
  }

  async onApplicationShutdown(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server!.close(resolve));
  }
}
