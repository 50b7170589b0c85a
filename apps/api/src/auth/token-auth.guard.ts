import { Inject, Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { ANONYMOUS_OWNER, AuthTokens } from './auth-tokens.js';
import type { OwnedRequest } from './owner.decorator.js';
import { PUBLIC_ROUTE } from './public.decorator.js';
import { ACCEPTS_STREAM_TICKET } from './stream-ticket.decorator.js';
import { StreamTickets } from './stream-tickets.js';

/** Injection token of the parsed `AUTH_TOKENS` (`undefined` in development mode). */
export const AUTH_TOKENS = Symbol('AUTH_TOKENS');

/**
 * Every route needs `Authorization: Bearer <token>` when `AUTH_TOKENS` is set; the token's owner
 * becomes the request's owner. Event routes also take `?ticket=`, a short-lived ticket for that
 * one job (see {@link StreamTickets}), since a browser's EventSource cannot send headers.
 * `?access_token=` is still accepted for clients written before tickets, but it puts the
 * long-lived token in the URL: prefer tickets.
 */
@Injectable()
export class TokenAuthGuard implements CanActivate {
  constructor(
    @Inject(AUTH_TOKENS) private readonly tokens: AuthTokens | undefined,
    @Inject(StreamTickets) private readonly tickets: StreamTickets,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()])) return true;
    const request = context.switchToHttp().getRequest<Request & OwnedRequest>();
    if (!this.tokens) {
      request.owner = ANONYMOUS_OWNER;
      return true;
    }
    if (!request.headers.authorization && typeof request.query.ticket === 'string') {
      request.owner = this.ticketOwner(context, request, request.query.ticket);
      return true;
    }
    const token = this.tokenOf(request);
    const owner = token === undefined ? undefined : this.tokens.ownerOf(token);
    if (!owner) throw new UnauthorizedException(token === undefined ? 'A bearer token is required' : 'The bearer token is not valid');
    request.owner = owner;
    return true;
  }

  /** The owner a ticket grants this request to; 401 on any other route, another job, a forged or an expired ticket. */
  private ticketOwner(context: ExecutionContext, request: Request, ticket: string): string {
    const accepts = this.reflector.get<boolean>(ACCEPTS_STREAM_TICKET, context.getHandler());
    const resource = this.reflector.get<string>(PATH_METADATA, context.getClass());
    const jobId = request.params.id;
    const owner = accepts && typeof jobId === 'string' ? this.tickets.verify(ticket, resource, jobId) : undefined;
    if (!owner)
      throw new UnauthorizedException(
        accepts ? 'The stream ticket is not valid for this job, or has expired' : 'Stream tickets are accepted only by event routes',
      );
    return owner;
  }

  private tokenOf(request: Request): string | undefined {
    const header = request.headers.authorization;
    if (header) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      return match ? match[1] : '';
    }
    const query = request.query.access_token;
    return typeof query === 'string' ? query : undefined;
  }
}
