import { Inject, Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { ANONYMOUS_OWNER, AuthTokens } from './auth-tokens.js';
import type { OwnedRequest } from './owner.decorator.js';
import { PUBLIC_ROUTE } from './public.decorator.js';

/** Injection token of the parsed `AUTH_TOKENS` (`undefined` in development mode). */
export const AUTH_TOKENS = Symbol('AUTH_TOKENS');

/**
 * Every route needs `Authorization: Bearer <token>` when `AUTH_TOKENS` is set; the token's owner
 * becomes the request's owner. `?access_token=` is accepted too, because a browser's EventSource
 * cannot send headers.
 */
@Injectable()
export class TokenAuthGuard implements CanActivate {
  constructor(
    @Inject(AUTH_TOKENS) private readonly tokens: AuthTokens | undefined,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()])) return true;
    const request = context.switchToHttp().getRequest<Request & OwnedRequest>();
    if (!this.tokens) {
      request.owner = ANONYMOUS_OWNER;
      return true;
    }
    const token = this.tokenOf(request);
    const owner = token === undefined ? undefined : this.tokens.ownerOf(token);
    if (!owner) throw new UnauthorizedException(token === undefined ? 'A bearer token is required' : 'The bearer token is not valid');
    request.owner = owner;
    return true;
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
