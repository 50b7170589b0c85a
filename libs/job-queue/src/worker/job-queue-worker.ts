import { Worker, type BackendFactory, type Job, type Processor, type WorkerOptions } from 'bullmq';
import { JobStreamsBackend, composingBackends } from '../backends/bullmq/job-streams-backend.js';
import { BridgedJob } from './bridged-job.js';
import { ProcessorBridge } from './processor-bridge.js';

/**
 * A drop-in BullMQ `Worker` whose jobs' progress becomes per-job event streams: each attempt's
 * `started`, every `job.updateProgress` and `job.log` call (in the same script as BullMQ's own
 * write, in call order), and one terminal event. Nothing else changes: BullMQ stores and emits what it always
 * does. Cancel from any instance fires the processor's `AbortSignal` (its third parameter) through
 * `Worker#cancelJob`, also when the processor does not declare that parameter.
 *
 * With `@nestjs/bullmq`, set it before the modules that register queues are loaded:
 * `BullModule.workerClass = JobQueueWorker`. It needs `JobQueueModule` with the `bullmq` backend
 * and the same key prefix in the process; a job waits for that module to be ready.
 *
 * @publicApi
 */
export class JobQueueWorker extends Worker {
  private static readonly open = new Set<JobQueueWorker>();

  /**
   * As BullMQ's `Worker`. Its backend composes (see `jobStreamsBackend`): each bridged
   * `updateProgress` and `log` call is one script, BullMQ's own followed by the stream append.
   * `backendFactory`, when given, makes BullMQ's Redis backend that is composed on (BullMQ's
   * default factory otherwise).
   *
   * @throws IncompatibleBullMqError when the installed `bullmq` lacks a command the backend
   * composes with, or ships it in another shape.
   * @throws TypeError when `backendFactory` makes a backend that is not BullMQ's Redis backend.
   */
  constructor(name: string, processor?: string | URL | null | Processor, opts?: WorkerOptions, backendFactory?: BackendFactory) {
    super(name, processor, opts as WorkerOptions, composingBackends(backendFactory) as BackendFactory<never>);
    // BullMQ creates the cancel signal only for processors that declare it; cancel must reach every one.
    (this as unknown as { processorAcceptsSignal: boolean }).processorAcceptsSignal = true;
    JobQueueWorker.open.add(this);
    // The bridge runs the attempts (cancel, breakers, the cap), not the backend on its own.
    this.composing.drive();
    // Once the module is up, BullMQ's moves to active start the attempts too (one script each).
    void this.bridge().then((bridge) => bridge.adopt(this.name, this.composing));
    this.on('failed', (job, error) => {
      if (!job) return;
      void this.bridge().then((bridge) => (bridge.bridges(this.name) ? bridge.onFailed(this.name, job, error) : undefined));
    });
  }

  /** The open workers of `queue` under BullMQ key prefix `prefix` in this process. */
  static openWorkers(queue: string, prefix: string): JobQueueWorker[] {
    return [...JobQueueWorker.open].filter((worker) => worker.name === queue && worker.keyPrefix === prefix);
  }

  /** The BullMQ key prefix of this worker's queue (`bull` unless set). */
  get keyPrefix(): string {
    return this.opts.prefix ?? 'bull';
  }

  protected override get Job(): typeof Job {
    return BridgedJob as unknown as typeof Job;
  }

  protected override async callProcessJob(job: Job, token: string, signal?: AbortSignal): Promise<unknown> {
    const bridge = await this.bridge();
    if (!bridge.bridges(this.name) || !(job instanceof BridgedJob)) return super.callProcessJob(job, token, signal);
    return bridge.run(
      this.name,
      job,
      token,
      () => super.callProcessJob(job, token, signal),
      (reason) => this.cancelJob(job.id!, reason),
      this.composing,
    );
  }

  /** The composing part of this worker's backend. */
  private get composing(): JobStreamsBackend {
    return JobStreamsBackend.of(this.getBackend())!;
  }

  override async close(force?: boolean): Promise<void> {
    JobQueueWorker.open.delete(this);
    return super.close(force);
  }

  private bridge(): Promise<ProcessorBridge> {
    return ProcessorBridge.forPrefix(this.keyPrefix, this.name);
  }
}
