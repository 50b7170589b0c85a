/**
 * The foreign-worker bridge of one queue as this process sees it (see `bridgeForeignWorkers`), for
 * health checks, metrics and alerts.
 */
export interface QueueBridgeStatus {
  queue: string;
  /** True while this process holds the queue's lease and reads its events stream. */
  leading: boolean;
  /** Id of the last entry applied, while leading. */
  position?: string;
  /**
   * While leading: how far behind the stream head the bridge is, in ms: while it reads full batches
   * (still behind), the age of the last entry applied; 0 once a read reached the head.
   */
  lagMs: number;
  /**
   * While leading: entries of the stream after the last one applied, as of the last read (0 when
   * that read reached the head; before Redis 7, which does not count the entries added to a stream,
   * at least the next batch).
   */
  lagEntries: number;
  /** Times this process took the queue's lease over. */
  takeovers: number;
  /** Times this process found entries trimmed before it read them. */
  gaps: number;
  /** Reads of the queue's events stream by this process that returned entries, since it started. */
  reads: number;
  /** Entries those reads returned: `entriesRead / reads` is the bridge's average batch. */
  entriesRead: number;
}
