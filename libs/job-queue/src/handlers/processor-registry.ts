import { Injectable } from '@nestjs/common';

/** A `@nestjs/bullmq` processor's `process(job, token, signal)`, bound to its instance. */
export type ProcessorFn = (job: unknown, token: string | undefined, signal: AbortSignal) => Promise<unknown>;

/**
 * The `@Processor(queue)` classes of the application, by queue, as found at start. The `memory`
 * backend runs them itself; on `bullmq`, `@nestjs/bullmq` does (with `JobQueueWorker`).
 */
@Injectable()
export class ProcessorRegistry {
  private readonly processors = new Map<string, { process: ProcessorFn; concurrency: number; origin: string }>();
  private readonly registered = new Set<string>();

  /** The first processor of a queue is the one the `memory` backend runs (BullMQ runs them all). */
  register(queue: string, process: ProcessorFn, concurrency: number, origin: string): void {
    if (!this.processors.has(queue)) this.processors.set(queue, { process, concurrency, origin });
  }

  get(queue: string): { process: ProcessorFn; concurrency: number; origin: string } | undefined {
    return this.processors.get(queue);
  }

  queues(): string[] {
    return [...this.processors.keys()].sort();
  }

  /** Records a BullMQ queue the application registered (`BullModule.registerQueue`), with or without a processor here. */
  registerQueue(queue: string): void {
    this.registered.add(queue);
  }

  /** Every queue of the application: registered ones and those with a processor here. */
  knownQueues(): string[] {
    return [...new Set([...this.registered, ...this.processors.keys()])].sort();
  }
}
