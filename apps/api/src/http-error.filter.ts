import { STATUS_CODES } from 'node:http';
import { Catch, HttpException, HttpStatus, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';

/** Longest path quoted back in a message. */
const MAX_QUOTED_PATH = 200;

/** The path of a request without its query string (which may carry `access_token`), shortened for messages. */
export function quotablePath(request: Request): string {
  const url = request.originalUrl ?? request.url ?? '/';
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  return path.length > MAX_QUOTED_PATH ? `${path.slice(0, MAX_QUOTED_PATH)}…` : path;
}

/**
 * Answers Nest's HTTP exceptions as `{ statusCode, error, message }`, like every other error of
 * the API. Nest's own answer to an unknown route quotes the whole URL, query string included, so a
 * `?access_token=` would come back in the body (and in any log that keeps error bodies): here it
 * names the method and the path only.
 */
@Catch(HttpException)
export class HttpErrorFilter implements ExceptionFilter<HttpException> {
  catch(exception: HttpException, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<Request>();
    const response = http.getResponse<Response>();
    if (response.headersSent) {
      response.end();
      return;
    }
    const status = exception.getStatus();
    const body = exception.getResponse();
    let message: unknown = typeof body === 'string' ? body : (body as { message?: unknown }).message;
    // No route matched (Express sets `route` on a matched request): Nest's message holds the URL.
    if (status === HttpStatus.NOT_FOUND && !(request as Request & { route?: unknown }).route) {
      message = `Cannot ${request.method} ${quotablePath(request)}`;
    }
    response.status(status).json({
      statusCode: status,
      error: (typeof body === 'object' && (body as { error?: unknown }).error) || STATUS_CODES[status] || 'Error',
      message: message ?? STATUS_CODES[status],
    });
  }
}
