import { randomUUID } from 'node:crypto';
import type { AppendEventsReply, AppenderStop, ScriptReply } from './job-scripts.js';

/** Where the calls of one attempt write, and whom they tell. */
export interface StreamCallsOptions {
  metaKey: string;
  eventsKey: string;
  /** The attempt the calls belong to: the stream refuses them once a newer attempt started. */
  attempt: number;
  maxEvents: number;
  maxEventBytes: number;
  /** Decodes the stream write's reply (and counts what it appended). */
  decode: (reply: ScriptReply) => AppendEventsReply;
  /** Called once when the stream refuses further events ('final', 'stale' or 'limit'). */
  onStop: (reason: AppenderStop) => void;
  /**
   * Makes a call's stream write durable once it is answered (with replica acks: waits for the
   * replicas, and writes the event again by a call of its own when they do not confirm it). The
   * attempt's end waits for it (see {@link StreamCalls.settled}).
   */
  confirm?: (call: StreamCall) => Promise<void>;
}

/** The keys and arguments of one call's stream write (`include-append-events.lua`: writer, seq, cap, attempt, type, data). */
export interface StreamCall {
  keys: [meta: string, events: string];
  args: Array<string | number>;
}

/**
 * The stream side of one attempt's `updateProgress` and `log` calls while a {@link JobStreamsBackend}
 * runs each as one script with BullMQ's own: the writer id and sequence number of every call (in
 * call order; a call sent again after a reconnect is appended once), the calls not answered yet
 * (the terminal event waits for them), and what the stream's replies tell the attempt.
 */
export class StreamCalls {
  /** Unique per attempt run: the stream takes a writer's sequence numbers in order, once each. */
  private readonly writer = randomUUID();
  private seq = 0;
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;
  /** Set once the stream refused a call: later calls are BullMQ's alone. */
  stopped?: AppenderStop;

  constructor(private readonly options: StreamCallsOptions) {}

  /** Largest JSON text of an event's data the stream takes (larger calls become `gap` events). */
  get maxEventBytes(): number {
    return this.options.maxEventBytes;
  }

  /** True while calls are written to the stream: the attempt runs and the stream has not refused it. */
  get writing(): boolean {
    return !this.closed && !this.stopped;
  }

  /**
   * The keys and arguments of the stream write of the next call (the event `type` with data
   * `json`), numbered in the order of this method's calls: call it in the order the commands go
   * out on one connection.
   */
  next(type: string, json: string): StreamCall {
    const { metaKey, eventsKey, maxEvents, attempt } = this.options;
    return { keys: [metaKey, eventsKey], args: [this.writer, ++this.seq, maxEvents, attempt, type, json] };
  }

  /** Counts `call` (a processor's call, made now) as unanswered until it settles. */
  track<T>(call: Promise<T>): Promise<T> {
    if (this.closed) return call;
    this.pending.add(call);
    const done = (): void => void this.pending.delete(call);
    call.then(done, done);
    return call;
  }

  /**
   * Takes the stream write's reply of `call` (`undefined` when BullMQ refused the call: nothing
   * was written).
   */
  settle(call: StreamCall, reply: ScriptReply | undefined): void {
    if (!reply) return;
    const decoded = this.options.decode(reply);
    if ((decoded.status === 'ok' || decoded.status === 'dup') && this.options.confirm) this.track(this.options.confirm(call));
    if (this.closed) return;
    if (decoded.status === 'final' || decoded.status === 'stale' || decoded.status === 'limit') this.stop(decoded.status);
  }

  /** Resolves once every call tracked so far is answered (or failed). */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  /** Ends the attempt's writing: later replies tell it nothing, and later calls are BullMQ's alone. */
  close(): void {
    this.closed = true;
  }

  private stop(reason: AppenderStop): void {
    if (this.stopped) return;
    this.stopped = reason;
    this.options.onStop(reason);
  }
}
