/**
 * Base class of every error the job queue throws on purpose. Both backends throw the same
 * subclasses for the same situations, so callers (and {@link JobQueueExceptionFilter}) can map
 * them without knowing which backend is in use. `code` is stable and safe to expose to clients.
 */
export abstract class JobQueueError extends Error {
  /** Stable, machine-readable code, e.g. `JOB_NOT_FOUND`. */
  abstract readonly code: string;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
