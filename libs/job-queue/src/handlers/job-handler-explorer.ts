import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import type { JobHandlerFn } from '../job-context.js';
import { JOB_HANDLER_METADATA } from './job-handler.decorator.js';
import { JobHandlerRegistry } from './job-handler-registry.js';

/** Finds `@JobHandler` methods on every provider once modules are initialized. */
@Injectable()
export class JobHandlerExplorer implements OnModuleInit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly registry: JobHandlerRegistry,
  ) {}

  onModuleInit(): void {
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
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
}
