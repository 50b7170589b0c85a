/**
 * A follow that cannot go on: the server refused it for good (404 unknown job or not yours, 400
 * bad cursor, 401/403), or it was given up after `maxRetries`. Transient failures (a dropped
 * connection, 502/503/504, a network error) are retried instead and never surface as this error
 * unless retries run out.
 */
export class JobStreamError extends Error {
  override readonly name = 'JobStreamError';

  constructor(
    message: string,
    /** The HTTP status of the refusal, when there was an answer. */
    readonly status?: number,
    /** The server's error code (`{ code }` of its JSON error body), when it sent one. */
    readonly code?: string,
  ) {
    super(message);
  }
}
