import { Injectable } from '@nestjs/common';
import type { JobHandlerFn } from '../contract/job-context.js';

/** Job names and their handlers, as found at start. */
@Injectable()
export class JobHandlerRegistry {
  private readonly handlers = new Map<string, JobHandlerFn>();

  /** @throws Error when the name is already taken: two handlers for one name is a wiring bug. */
  register(name: string, handler: JobHandlerFn, origin = 'a handler'): void {
    if (typeof name !== 'string' || !/^[A-Za-z0-9_.:-]{1,100}$/.test(name)) {
      throw new Error(`@JobHandler name ${JSON.stringify(name)} on ${origin} must be 1 to 100 letters, digits, "_", ".", ":" or "-"`);
    }
    if (this.handlers.has(name)) throw new Error(`Two handlers are registered for job name "${name}" (the second on ${origin})`);
    this.handlers.set(name, handler);
  }

  get(name: string): JobHandlerFn | undefined {
    return this.handlers.get(name);
  }

  has(name: string): boolean {
    return this.handlers.has(name);
  }

  names(): string[] {
    return [...this.handlers.keys()].sort();
  }
}
