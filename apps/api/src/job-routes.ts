import { BadRequestException, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import type { Request, Response } from 'express';
import { JobEventStreamer, JobQueue, type JobEventPage, type JobInfo } from 'nestjs-job-streams';
import { Owner } from './auth/owner.decorator.js';
import { AcceptsStreamTicket } from './auth/stream-ticket.decorator.js';
import { StreamTickets } from './auth/stream-tickets.js';
import { API_SETTINGS, type ApiSettings } from './api-settings.js';

/** The value of `?delivery=`, when it is one of `allowed`. */
export function deliveryOf(value: unknown, allowed: readonly string[]): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !allowed.includes(value)) {
    throw new BadRequestException(`delivery must be one of ${allowed.join(', ')}`);
  }
  return value;
}

/**
 * The routes every kind of demo job has, on the queue the subclass names: its state, its events
 * (polling, SSE, NDJSON) and cancel, from any instance. Subclasses add `POST /` to start one.
 */
export abstract class JobRoutes {
  /** The BullMQ queue of this kind of job. */
  protected abstract readonly queueName: string;

  constructor(
    @Inject(JobQueue) protected readonly queue: JobQueue,
    @Inject(JobEventStreamer) protected readonly streamer: JobEventStreamer,
    @Inject(API_SETTINGS) protected readonly settings: ApiSettings,
    @Inject(StreamTickets) protected readonly tickets: StreamTickets,
  ) {}

  @Get(':id')
  state(@Param('id') id: string, @Owner() owner: string): Promise<JobInfo> {
    return this.queue.getJob(id, { queue: this.queueName, owner });
  }

  /**
   * `delivery=polling`: one page `{ events, next, done }` (long-poll with `waitMs`).
   * Otherwise a stream: SSE when the client accepts `text/event-stream`, else NDJSON.
   */
  @Get(':id/events')
  @AcceptsStreamTicket()
  async events(
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
    @Owner() owner: string,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    const delivery = deliveryOf(query.delivery, ['polling', 'streaming']) ?? 'streaming';
    if (delivery === 'polling') {
      const page: JobEventPage = await this.streamer.poll(id, request, { queue: this.queueName, owner, query });
      if (!response.destroyed) response.status(200).json(page);
      return;
    }
    if (query.after !== undefined && typeof query.after !== 'string') throw new BadRequestException('after must be a single event id');
    const options = { queue: this.queueName, owner, after: query.after as string | undefined, heartbeatMs: this.settings.heartbeatMs };
    if (/\btext\/event-stream\b/i.test(request.headers.accept ?? '')) {
      await this.streamer.sse(id, request, response, options);
    } else {
      await this.streamer.ndjson(id, request, response, options);
    }
  }

  /**
   * 201 `{ ticket, expiresAt }`: a short-lived ticket that lets `GET :id/events?ticket=` read this
   * job's events without the bearer token (for `EventSource`). 404 when the job is unknown or not yours.
   */
  @Post(':id/ticket')
  async ticket(@Param('id') id: string, @Owner() owner: string): Promise<{ ticket: string; expiresAt: number }> {
    await this.queue.getJob(id, { queue: this.queueName, owner });
    const resource = Reflect.getMetadata(PATH_METADATA, this.constructor) as string;
    return this.tickets.issue(owner, resource, id);
  }

  /** 202 `{ cancelled: true }`; 409 when the job has already ended. */
  @Post(':id/cancel')
  @HttpCode(202)
  async cancel(@Param('id') id: string, @Owner() owner: string): Promise<{ cancelled: true }> {
    await this.queue.cancel(id, { queue: this.queueName, owner, reason: `cancelled by ${owner}` });
    return { cancelled: true };
  }
}
