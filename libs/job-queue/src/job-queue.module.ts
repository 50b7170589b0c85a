import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { getSharedConfigToken } from '@nestjs/bullmq';
import { createBackend } from './create-backend.js';
import { JobHandlerExplorer } from './handlers/job-handler-explorer.js';
import { JobHandlerRegistry } from './handlers/job-handler-registry.js';
import { ProcessorRegistry } from './handlers/processor-registry.js';
import { JobEventStreamer } from './http/job-event-streamer.js';
import { JOB_QUEUE_OPTIONS } from './job-queue.constants.js';
import { JobQueue } from './contract/job-queue.js';
import { JobQueueMeter } from './metrics/job-queue-meter.js';
import type { JobQueueModuleAsyncOptions, JobQueueModuleOptions, ResolvedJobQueueOptions } from './options/job-queue-module-options.js';
import { withBullSharedConfig, type BullSharedConfig } from './options/options-from-bull-config.js';
import { validateJobQueueOptions } from './options/validate-job-queue-options.js';

/** `BullModule.forRoot`'s shared configuration, when the application has one. */
const BULL_SHARED_CONFIG = { token: getSharedConfigToken(), optional: true };

const queueProvider: Provider = {
  provide: JobQueue,
  useFactory: async (options: ResolvedJobQueueOptions, handlers: JobHandlerRegistry, processors: ProcessorRegistry, meter: JobQueueMeter) =>
    new JobQueue(await createBackend(options, handlers, processors, meter), meter),
  inject: [JOB_QUEUE_OPTIONS, JobHandlerRegistry, ProcessorRegistry, JobQueueMeter],
};

/**
 * Provides {@link JobQueue} to the whole application (the module is global) and runs the
 * `@JobHandler` methods of every provider.
 *
 * @example
 * ```ts
 * JobQueueModule.forRootAsync({
 *   imports: [ConfigModule],
 *   inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ backend: config.get('JOB_QUEUE_BACKEND', 'memory') }),
 * })
 * ```
 */
@Module({})
export class JobQueueModule {
  /** Static options, validated at start. */
  static forRoot(options: JobQueueModuleOptions): DynamicModule {
    return JobQueueModule.build(
      {
        provide: JOB_QUEUE_OPTIONS,
        useFactory: (bull?: BullSharedConfig) => validateJobQueueOptions(withBullSharedConfig(options, bull)),
        inject: [BULL_SHARED_CONFIG],
      },
      [],
    );
  }

  /** Options from a factory, typically reading `ConfigService`; validated at start. */
  static forRootAsync(options: JobQueueModuleAsyncOptions): DynamicModule {
    return JobQueueModule.build(
      {
        provide: JOB_QUEUE_OPTIONS,
        useFactory: async (bull: BullSharedConfig | undefined, ...args: never[]) =>
          validateJobQueueOptions(withBullSharedConfig(await options.useFactory(...args), bull)),
        inject: [BULL_SHARED_CONFIG, ...(options.inject ?? [])],
      },
      options.imports ?? [],
    );
  }

  private static build(optionsProvider: Provider, imports: NonNullable<JobQueueModuleAsyncOptions['imports']>): DynamicModule {
    return {
      module: JobQueueModule,
      global: true,
      imports: [DiscoveryModule, ...imports],
      providers: [
        optionsProvider,
        JobHandlerRegistry,
        ProcessorRegistry,
        JobHandlerExplorer,
        JobQueueMeter,
        queueProvider,
        JobEventStreamer,
      ],
      exports: [JobQueue, JobEventStreamer, JOB_QUEUE_OPTIONS, JobQueueMeter],
    };
  }
}
