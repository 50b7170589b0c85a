import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { WorkerHost } from '@nestjs/bullmq';
import { Queue } from 'bullmq';
import type { JobHandlerFn } from '../contract/job-context.js';
import { JOB_HANDLER_METADATA } from './job-handler.decorator.js';
import { JobHandlerRegistry } from './job-handler-registry.js';
import { ProcessorRegistry, type ProcessorFn } from './processor-registry.js';

/** Metadata keys `@Processor(queue, workerOptions)` of `@nestjs/bullmq` sets (not exported by the package). */
const PROCESSOR_METADATA = 'bullmq:processor_metadata';
const WORKER_METADATA = 'bullmq:worker_metadata';

/**
 * Finds `@JobHandler` methods, `@Processor` classes and the BullMQ queues `BullModule.registerQueue`
 * provides, on every provider once modules are initialized.
 */
@Injectable()
export class JobHandlerExplorer implements OnModuleInit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly registry: JobHandlerRegistry,
    private readonly processors: ProcessorRegistry,
  ) {}

  onModuleInit(): void {
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      if (instance instanceof WorkerHost) this.registerProcessor(instance);
      if (instance instanceof Queue) this.processors.registerQueue(instance.name);
      const prototype = Object.getPrototypeOf(instance) as object;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const fn = (instance as Record<string, unknown>)[method];
        if (typeof fn !== 'function') continue;
        const name = this.reflector.get<string | undefined>(JOB_HANDLER_METADATA, fn);
        if (name === undefined) continue;
        const origin = `${instance.constructor.name}.${method}`;
        this.registry.register(name, (fn as JobHandlerFn).bind(instance) as JobHandlerFn, origin);
      }
    }
  }

  private registerProcessor(instance: WorkerHost): void {
    const metadata = this.reflector.get<{ name?: string } | undefined>(PROCESSOR_METADATA, instance.constructor);
    if (!metadata?.name) return;
    const workerOptions = this.reflector.get<{ concurrency?: number } | undefined>(WORKER_METADATA, instance.constructor);
    const process = (instance.process as ProcessorFn).bind(instance) as ProcessorFn;
    this.processors.register(metadata.name, process, workerOptions?.concurrency ?? 1, instance.constructor.name);
  }
}
