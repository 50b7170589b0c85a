import { SetMetadata } from '@nestjs/common';

/** Metadata key under which {@link JobHandler} stores the job name. */
export const JOB_HANDLER_METADATA = 'job-queue:handler';

/**
 * Marks a provider method as the handler of jobs named `name`. Handlers are found at start on
 * every provider of the application, so any process that imports the provider can run the job;
 * the method receives a {@link JobContext} and its resolved value becomes the job's result.
 *
 * @example
 * ```ts
 * @Injectable()
 * export class ReportHandler {
 *   @JobHandler('report')
 *   async run(ctx: JobContext<{ month: string }>) {
 *     await ctx.emit('progress', { percent: 50 });
 *     return { url: '...' };
 *   }
 * }
 * ```
 */
export const JobHandler = (name: string): MethodDecorator => SetMetadata(JOB_HANDLER_METADATA, name);
