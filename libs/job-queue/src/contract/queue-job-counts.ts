/**
 * How many jobs a queue holds in each state, as its backend counts them: BullMQ's states on the
 * `bullmq` backend (`waiting`, `active`, `delayed`, `prioritized`, `completed`, `failed`,
 * `waiting-children`; finished jobs count until BullMQ removes them), the job states
 * (`queued`, `running`, `completed`, `failed`, `cancelled`) on `memory`.
 */
export interface QueueJobCounts {
  queue: string;
  counts: Record<string, number>;
}
