import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, Logger, Optional, type BeforeApplicationShutdown } from '@nestjs/common';
import { JobQueueError } from '../errors/job-queue.error.js';
import type { JobEvent, JobEventPage } from '../contract/job-event.js';
import { JobQueue, type JobAccessOptions } from '../contract/job-queue.js';
import { JobQueueMeter, type DeliveryKind } from '../metrics/job-queue-meter.js';
import { NDJSON_FORMAT, SSE_FORMAT, type EventStreamFormat } from './event-stream-format.js';
import { parseEventQuery, type RawEventQuery } from './parse-event-query.js';

/** Options of {@link JobEventStreamer.sse} and {@link JobEventStreamer.ndjson}. */
export interface StreamEventsOptions extends JobAccessOptions {
  /** Resume after this cursor; a `Last-Event-ID` request header wins over it (browsers send that on reconnect). */
  after?: string;
  /** Interval of SSE `: ping` comments while no event is written (default 15000 ms). */
  heartbeatMs?: number;
}

/** Options of {@link JobEventStreamer.poll}: the raw query plus who asks. */
export interface PollEventsOptions extends JobAccessOptions {
  query: RawEventQuery;
}

const DEFAULT_HEARTBEAT_MS = 15_000;

/**
 * Serves a job's events over HTTP so that a controller is a few lines: long-polling pages, SSE
 * and NDJSON streams, with resume, heartbeats, backpressure and cleanup when the client leaves.
 *
 * Errors known before the first byte (unknown job, bad cursor) are thrown as typed errors for the
 * exception filter to map; errors after the stream began end the response, and the client
 * resumes from the last id it saw.
 */
@Injectable()
export class JobEventStreamer implements BeforeApplicationShutdown {
  private readonly logger = new Logger('JobEventStreamer');
  /** Aborts of the streams and long-polls in progress. */
  private readonly open = new Set<AbortController>();
  private closing = false;

  constructor(
    @Inject(JobQueue) private readonly queue: JobQueue,
    @Optional() @Inject(JobQueueMeter) private readonly meter?: JobQueueMeter,
  ) {}

  /** Tells the meter that `events` went out by `delivery`. */
  private delivered(delivery: DeliveryKind, events: JobEvent[]): void {
    const sink = this.meter?.sink;
    if (sink && events.length) sink.delivered(delivery, events.length, Date.now() - events[events.length - 1].ts);
  }

  /**
   * Ends every stream and long-poll when the application shuts down: Nest closes the HTTP server
   * (which waits for open responses) before its shutdown hooks run, so a stream left open would
   * hold the shutdown until its job ends. Clients resume from their last id on another instance.
   */
  beforeApplicationShutdown(): void {
    this.closing = true;
    for (const abort of this.open) abort.abort();
  }

  /** Registers a request's abort for {@link beforeApplicationShutdown}; returns the unregistration. */
  private track(abort: AbortController): () => void {
    if (this.closing) abort.abort();
    this.open.add(abort);
    return () => this.open.delete(abort);
  }

  /** One page of events for long-polling: `{ events, next, done }`. A wait ends when the client goes away. */
  async poll(jobId: string, request: IncomingMessage, options: PollEventsOptions): Promise<JobEventPage> {
    const query = parseEventQuery(options.query);
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    request.once('close', onClose);
    const untrack = this.track(abort);
    try {
      const page = await this.queue.readEvents(jobId, { queue: options.queue, owner: options.owner, ...query, signal: abort.signal });
      this.delivered('polling', page.events);
      return page;
    } finally {
      untrack();
      request.off('close', onClose);
    }
  }

  /** Streams as Server-Sent Events. Answers 204 when the cursor is already at the terminal event. */
  sse(jobId: string, request: IncomingMessage, response: ServerResponse, options: StreamEventsOptions = {}): Promise<void> {
    return this.stream(jobId, request, response, SSE_FORMAT, options);
  }

  /** Streams as NDJSON, one event object per line, ending after the terminal event. */
  ndjson(jobId: string, request: IncomingMessage, response: ServerResponse, options: StreamEventsOptions = {}): Promise<void> {
    return this.stream(jobId, request, response, NDJSON_FORMAT, options);
  }

  /** The cursor to resume from: `Last-Event-ID` if sent, else `after`. */
  static resumeCursor(request: IncomingMessage, after?: string): string | undefined {
    const header = request.headers['last-event-id'];
    const lastEventId = Array.isArray(header) ? header[0] : header;
    return lastEventId !== undefined && lastEventId !== '' ? lastEventId : after;
  }

  private async stream(
    jobId: string,
    request: IncomingMessage,
    response: ServerResponse,
    format: EventStreamFormat,
    options: StreamEventsOptions,
  ): Promise<void> {
    const after = parseEventQuery({ after: JobEventStreamer.resumeCursor(request, options.after) }).after;
    // The first read throws (404, 400) before anything is written, so the client gets a real status.
    const page = await this.queue.readEvents(jobId, { queue: options.queue, owner: options.owner, after });
    if (format.noContentWhenDone && page.done && page.events.length === 0) {
      response.writeHead(204).end();
      return;
    }

    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    response.once('close', onClose);
    // A client that left while the first read was in flight has had its 'close' already: without
    // this, the stream would follow the job (and hold a reader) for a connection that is gone.
    if (response.destroyed) abort.abort();
    const untrack = this.track(abort);
    const delivery: DeliveryKind = format === SSE_FORMAT ? 'sse' : 'ndjson';
    this.meter?.sink?.streamOpened(delivery);
    // No `Connection` header of ours: Node keeps the connection alive, or closes it after this
    // response when the client (or a server shutting down) asked for `Connection: close`.
    response.writeHead(200, {
      'Content-Type': format.contentType,
      'Cache-Control': 'no-cache, no-transform',
      'X-Accel-Buffering': 'no',
    });
    let lastWrite = Date.now();
    const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const heartbeat = format.heartbeat
      ? setInterval(() => {
          if (Date.now() - lastWrite >= heartbeatMs - 5 && response.writableLength === 0) response.write(format.heartbeat);
        }, heartbeatMs)
      : undefined;
    heartbeat?.unref();

    const write = async (events: JobEvent[]): Promise<void> => {
      lastWrite = Date.now();
      this.delivered(delivery, events);
      if (!response.write(events.map(format.encode).join(''))) await this.drained(response, abort.signal);
    };
    try {
      if (format.preamble) response.write(format.preamble);
      response.flushHeaders();
      if (page.events.length) await write(page.events);
      if (!page.done && !abort.signal.aborted) {
        for await (const events of this.queue.followPagesAfter(jobId, page, {
          queue: options.queue,
          owner: options.owner,
          signal: abort.signal,
        })) {
          await write(events);
          if (abort.signal.aborted) break;
        }
      }
    } catch (error) {
      // Headers are out; the client resumes from the last id it received.
      if (!(error instanceof JobQueueError)) this.logger.error(`Event stream of job ${jobId} broke: ${(error as Error).message}`);
    } finally {
      if (heartbeat) clearInterval(heartbeat);
      this.meter?.sink?.streamClosed(delivery);
      untrack();
      response.off('close', onClose);
      if (!response.writableEnded) response.end();
    }
  }

  private drained(response: ServerResponse, signal: AbortSignal): Promise<void> {
    // A destroyed response never drains, and an aborted signal does not fire again.
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        response.off('drain', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      response.once('drain', done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
