/** Injection token of the validated {@link ResolvedJobQueueOptions}. */
export const JOB_QUEUE_OPTIONS = Symbol('JOB_QUEUE_OPTIONS');
