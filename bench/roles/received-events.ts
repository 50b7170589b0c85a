import { isTerminalEventType, type JobQueue } from 'nestjs-job-streams';
import { now } from '../support/clock.js';
import { EVENT_TYPE, type TokenData } from '../support/payload.js';

/** How a job's stream, read once the job ended, compares with what one follower received while it ran. */
export interface StreamComparison {
  /** Token events the handler emitted (sequence numbers 0 .. emitted - 1). */
  emitted: number;
  /** Token events the stream holds. */
  stored: number;
  /** Emitted events the stream does not hold (gaps in the sequence numbers): writes that were lost. */
  missing: number;
  /** Emitted events the stream holds more than once. */
  storedTwice: number;
  /** Events the follower received whose ids the stream no longer holds. */
  seenThenLost: number;
  /** Token events the follower received twice (once under an id that was lost, again under a new one). */
  receivedTwice: number;
  /** Events of the stream (by id) that the follower did not receive. */
  storedNotReceived: number;
  /** `started` events in the stream: 1 unless the job ran again. */
  attempts: number;
  /** The type of the stream's terminal event, if it has one. */
  terminal?: string;
  /** The job's state as `JobQueue.getJob` reports it. */
  state: string;
  /** Why the follower's follow ended: on the terminal event, on its own without one, by timeout, or by an error. */
  followerEnd: string;
  /** When the follower received the terminal event, on the shared monotonic clock; NaN without one. */
  terminalAt: number;
}

/**
 * One follower of one job (`JobQueue.followPages` from its first event), keeping the id of every
 * event it receives and the sequence number of every token event, to be compared with what the
 * job's stream holds after the job ended ({@link compareWithStream}).
 */
export class ReceivedEvents {
  private readonly ids = new Set<string>();
  private readonly tokens: number[] = [];
  private readonly stop = new AbortController();
  private readonly ended: Promise<string>;
  private terminalAt = NaN;

  constructor(
    private readonly queue: JobQueue,
    private readonly jobId: string,
    private readonly owner: string,
  ) {
    this.ended = (async () => {
      for await (const page of queue.followPages(jobId, { owner, signal: this.stop.signal })) {
        const at = now();
        for (const event of page) {
          this.ids.add(event.id);
          if (event.type === EVENT_TYPE) this.tokens.push((event.data as TokenData).i);
          if (isTerminalEventType(event.type)) {
            this.terminalAt = at;
            return 'terminal';
          }
        }
      }
      return this.stop.signal.aborted ? 'timeout' : 'without a terminal event';
    })().catch((error: Error) => `error: ${error.message}`);
  }

  /** Events received so far. */
  get received(): number {
    return this.ids.size;
  }

  /**
   * Waits up to `timeoutMs` for the follower to end, then reads the job's stream from its first
   * event and compares it with what was received; `emitted` is how many token events the handler
   * emitted.
   */
  async compareWithStream(emitted: number, timeoutMs: number): Promise<StreamComparison> {
    const timer = setTimeout(() => this.stop.abort(), timeoutMs);
    const followerEnd = await this.ended;
    clearTimeout(timer);
    const storedIds = new Set<string>();
    const storedTokens = new Set<number>();
    let stored = 0;
    let attempts = 0;
    let terminal: string | undefined;
    for (let after: string | undefined; ;) {
      const page = await this.queue.readEvents(this.jobId, { owner: this.owner, after, limit: 1000 });
      for (const event of page.events) {
        storedIds.add(event.id);
        if (event.type === 'started') attempts++;
        else if (event.type === EVENT_TYPE) {
          stored++;
          storedTokens.add((event.data as TokenData).i);
        } else if (isTerminalEventType(event.type)) terminal = event.type;
      }
      if (page.done || !page.events.length) break;
      after = page.next;
    }
    let missing = 0;
    for (let i = 0; i < emitted; i++) if (!storedTokens.has(i)) missing++;
    return {
      emitted,
      stored,
      missing,
      storedTwice: stored - storedTokens.size,
      seenThenLost: [...this.ids].filter((id) => !storedIds.has(id)).length,
      receivedTwice: this.tokens.length - new Set(this.tokens).size,
      storedNotReceived: [...storedIds].filter((id) => !this.ids.has(id)).length,
      attempts,
      terminal,
      state: (await this.queue.getJob(this.jobId, { owner: this.owner })).state,
      followerEnd,
      terminalAt: this.terminalAt,
    };
  }

  close(): void {
    this.stop.abort();
  }
}
