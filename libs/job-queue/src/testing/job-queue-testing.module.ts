import { Module, type DynamicModule } from '@nestjs/common';
import { JobQueueModule } from '../job-queue.module.js';
import type { JobQueueModuleOptions } from '../options/job-queue-module-options.js';
import { JobQueueTesting } from './job-queue-testing.js';

/**
 * `JobQueueModule` on the memory backend, for tests of an app's controllers, `@JobHandler`s and
 * processors without Redis, and {@link JobQueueTesting} to wait for a job's end. Import it in a
 * test module in place of the app's `JobQueueModule`; the app's providers and controllers stay.
 *
 * @example
 * ```ts
 * const moduleRef = await Test.createTestingModule({
 *   imports: [JobQueueTestingModule.forRoot()],
 *   providers: [ReportHandler],
 *   controllers: [ReportsController],
 * }).compile();
 * await moduleRef.init();
 * ```
 *
 * @publicApi
 */
@Module({})
export class JobQueueTestingModule {
  /** `options` as `JobQueueModule.forRoot` takes them, on the memory backend. */
  static forRoot(options: Omit<JobQueueModuleOptions, 'backend'> = {}): DynamicModule {
    return {
      module: JobQueueTestingModule,
      imports: [JobQueueModule.forRoot({ ...options, backend: 'memory' })],
      providers: [JobQueueTesting],
      exports: [JobQueueTesting],
    };
  }
}
