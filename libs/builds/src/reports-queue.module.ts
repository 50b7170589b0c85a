import { Module } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { BullModule } from '@nestjs/bullmq';
import {
  JobQueueWorker,
  JobStreamsQueue,
  bullModuleClusterConnection,
  bullModuleConnection,
  jobQueueOptionsFromEnv,
  validateJobQueueOptions,
} from 'nestjs-job-streams';
import { REPORTS_QUEUE } from './report.processor.js';

// The one line the bridge needs in an @nestjs/bullmq app: the workers @nestjs/bullmq makes for
// @Processor classes put every job's progress and log into the job's event stream. It must run
// before `registerQueue` is called (below, when this file is loaded).
BullModule.workerClass = JobQueueWorker;
// And the queues it makes for @InjectQueue give each job its stream's metadata with BullMQ's add.
BullModule.queueClass = JobStreamsQueue;

/**
 * The demo's `@nestjs/bullmq` setup, as a team already has it: the shared connection (the same
 * `REDIS_URL` (or `REDIS_CLUSTER_NODES`) and `JOB_QUEUE_PREFIX` as the job queue module) and the
 * `reports` queue. Imported on
 * the `bullmq` backend only; on `memory` the job queue module runs the processor itself.
 */
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [ConfigService],
      useFactory: async (config: ConfigService) => {
        // The job queue module's own reading of REDIS_URL, REDIS_CLUSTER_NODES, JOB_QUEUE_PREFIX and
        // REDIS_FAILOVER_TIMEOUT_MS (on a cluster, processors' calls wait through a master's failover).
        const { url, clusterNodes, prefix, failoverTimeoutMs } = validateJobQueueOptions(jobQueueOptionsFromEnv(config)).redis;
        const connection = clusterNodes
          ? await bullModuleClusterConnection(clusterNodes, { failoverTimeoutMs })
          : await bullModuleConnection(url);
        return { connection, prefix };
      },
    }),
    BullModule.registerQueue({ name: REPORTS_QUEUE }),
  ],
})
export class ReportsQueueModule {}
