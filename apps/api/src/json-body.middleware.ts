import type { NextFunction, Request, Response } from 'express';
import express from 'express';

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 256 * 1024;

const parseJson = express.json({ limit: MAX_BODY_BYTES, strict: false });

function reply(response: Response, status: number, message: string): void {
  response.status(status).json({
    statusCode: status,
    error: status === 413 ? 'Payload Too Large' : status === 415 ? 'Unsupported Media Type' : 'Bad Request',
    message,
  });
}

/**
 * Parses JSON bodies up to {@link MAX_BODY_BYTES}, answering in the API's JSON error shape: 413
 * when too large, 400 when malformed, 415 when a body comes with another content type.
 */
export function jsonBody(request: Request, response: Response, next: NextFunction): void {
  const length = Number(request.headers['content-length'] ?? 0);
  const hasBody = length > 0 || request.headers['transfer-encoding'] !== undefined;
  if (hasBody && !request.is(['application/json', 'application/*+json'])) {
    if (length > MAX_BODY_BYTES) return reply(response, 413, `The body must not exceed ${MAX_BODY_BYTES} bytes`);
    return reply(response, 415, 'The body must be JSON (Content-Type: application/json)');
  }
  parseJson(request, response, (error?: unknown) => {
    if (!error) return next();
    const type = (error as { type?: string }).type;
    if (type === 'entity.too.large') return reply(response, 413, `The body must not exceed ${MAX_BODY_BYTES} bytes`);
    if (type === 'encoding.unsupported' || type === 'charset.unsupported') return reply(response, 415, 'The body must be UTF-8 JSON');
    return reply(response, 400, 'The body is not valid JSON');
  });
}
