import type { NextFunction, Request, Response } from 'express';
import type { AuthTokens } from '../auth/auth-tokens.js';

/**
 * Who may open the queue board: it shows every job of every owner (data, results, errors), so
 * with `AUTH_TOKENS` set only the owners named in `ADMIN_OWNERS` may, with their usual token sent
 * as `Authorization: Bearer <token>` or as HTTP Basic (`<owner>:<token>`, which a browser prompts
 * for and then sends with each of the board's own requests). Without `AUTH_TOKENS` (development
 * mode) it is open, like every other route.
 */
export function queueBoardAuth(
  tokens: AuthTokens | undefined,
  admins: readonly string[],
): (request: Request, response: Response, next: NextFunction) => void {
  return (request, response, next) => {
    if (!tokens) return next();
    const owner = ownerOf(request, tokens);
    if (owner === undefined) {
      response
        .status(401)
        .setHeader('WWW-Authenticate', 'Basic realm="queues", charset="UTF-8"')
        .json({ statusCode: 401, error: 'Unauthorized', message: 'The queue board needs an admin token (Bearer, or Basic owner:token)' });
      return;
    }
    if (!admins.includes(owner)) {
      response
        .status(403)
        .json({ statusCode: 403, error: 'Forbidden', message: 'Only the owners in ADMIN_OWNERS may open the queue board' });
      return;
    }
    next();
  };
}

function ownerOf(request: Request, tokens: AuthTokens): string | undefined {
  const header = request.headers.authorization ?? '';
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return tokens.ownerOf(bearer[1]);
  const basic = /^Basic\s+(\S+)\s*$/i.exec(header);
  if (!basic) return undefined;
  const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
  const separator = decoded.indexOf(':');
  if (separator < 0) return undefined;
  const owner = tokens.ownerOf(decoded.slice(separator + 1));
  // The user name must be the token's owner: a token is not accepted under another name.
  return owner !== undefined && owner === decoded.slice(0, separator) ? owner : undefined;
}
