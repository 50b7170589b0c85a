import { createParamDecorator, type ExecutionContext } from '@nestjs/common';

/** Requests after {@link TokenAuthGuard} carry the caller's name. */
export interface OwnedRequest {
  owner?: string;
}

/** The caller's name, as established by {@link TokenAuthGuard}. */
export const Owner = createParamDecorator((_: unknown, context: ExecutionContext): string => {
  const owner = context.switchToHttp().getRequest<OwnedRequest>().owner;
  if (!owner) throw new Error('Owner() used on a route the TokenAuthGuard did not run for');
  return owner;
});
