import { waitFor } from '../support/clock.js';

/** The held jobs running in this process, and the release that ends the ones running now. */
export class HeldJobs {
  running = 0;
  private open!: () => void;
  private released = this.gate();

  /** Holds until the next {@link release}, or until `signal` fires (a cancel). */
  async hold(signal?: AbortSignal): Promise<void> {
    this.running++;
    try {
      await new Promise<void>((resolve) => {
        void this.released.then(resolve);
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      this.running--;
    }
  }

  /**
   * Ends every held job running now (jobs that start later hold until the next release) and waits
   * until they have returned.
   */
  async release(): Promise<void> {
    const open = this.open;
    this.released = this.gate();
    open();
    await waitFor('held jobs to return', () => this.running === 0, 30_000);
  }

  private gate(): Promise<void> {
    return new Promise((resolve) => (this.open = resolve));
  }
}

/** This process's held jobs (the bench handlers' and a plain BullMQ worker's). */
export const heldJobs = new HeldJobs();
