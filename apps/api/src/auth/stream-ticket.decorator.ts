import { SetMetadata } from '@nestjs/common';

export const ACCEPTS_STREAM_TICKET = 'api:accepts-stream-ticket';

/**
 * Lets a route be called with `?ticket=` (see {@link StreamTickets}) instead of a bearer token:
 * only routes that read one job's events, the job named by the `:id` parameter of the route.
 */
export const AcceptsStreamTicket = (): MethodDecorator => SetMetadata(ACCEPTS_STREAM_TICKET, true);
