import type { NextFunction, Request, Response } from 'express';
import express from 'express';

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 256 * 1024;

const parseJson = express.json({ limit: MAX_BODY_BYTES, strict: false });

/** What was wrong with a request's body; answered by {@link BodyErrorInterceptor} once the guards have run. */
export interface BodyError {
  statusCode: 400 | 413 | 415;
  error: string;
  message: string;
}

/** Requests after {@link jsonBody} carry the problem of their body, if any. */
export interface BodyErrorRequest {
  bodyError?: BodyError;
}

function problem(statusCode: BodyError['statusCode'], message: string): BodyError {
  const error = statusCode === 413 ? 'Payload Too Large' : statusCode === 415 ? 'Unsupported Media Type' : 'Bad Request';
  return { statusCode, error, message };
}

/**
 * Parses JSON bodies up to {@link MAX_BODY_BYTES}: 413 when too large, 400 when malformed, 415
 * when a body comes with another content type. The problem is only recorded here and answered
 * after the guards, so that a caller without a valid token gets 401 whatever it sent.
 */
export function jsonBody(request: Request & BodyErrorRequest, _response: Response, next: NextFunction): void {
  const length = Number(request.headers['content-length'] ?? 0);
  const hasBody = length > 0 || request.headers['transfer-encoding'] !== undefined;
  if (hasBody && !request.is(['application/json', 'application/*+json'])) {
    request.bodyError =
      length > MAX_BODY_BYTES
        ? problem(413, `The body must not exceed ${MAX_BODY_BYTES} bytes`)
        : problem(415, 'The body must be JSON (Content-Type: application/json)');
    return next();
  }
  parseJson(request, _response, (error?: unknown) => {
    if (error) {
      const type = (error as { type?: string }).type;
      if (type === 'entity.too.large') request.bodyError = problem(413, `The body must not exceed ${MAX_BODY_BYTES} bytes`);
      else if (type === 'encoding.unsupported' || type === 'charset.unsupported')
        request.bodyError = problem(415, 'The body must be UTF-8 JSON');
      else request.bodyError = problem(400, 'The body is not valid JSON');
    }
    next();
  });
}
