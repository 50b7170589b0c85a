import { STATUS_CODES, type ServerResponse } from 'node:http';
import { Catch, HttpStatus, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { JobQueueError } from '../errors/job-queue.error.js';
import { JobQueueUnavailableError } from '../errors/job-queue-unavailable.error.js';

const STATUS_BY_CODE: Record<string, HttpStatus> = {
  JOB_NOT_FOUND: HttpStatus.NOT_FOUND,
  JOB_ALREADY_FINISHED: HttpStatus.CONFLICT,
  UNKNOWN_JOB_NAME: HttpStatus.BAD_REQUEST,
  UNKNOWN_QUEUE: HttpStatus.BAD_REQUEST,
  INVALID_CURSOR: HttpStatus.BAD_REQUEST,
  INVALID_ARGUMENT: HttpStatus.BAD_REQUEST,
  INVALID_EVENT: HttpStatus.BAD_REQUEST,
  JOB_QUEUE_UNAVAILABLE: HttpStatus.SERVICE_UNAVAILABLE,
};

/** The HTTP status a {@link JobQueueError} stands for (500 for codes no client can fix). */
export function httpStatusOf(error: JobQueueError): HttpStatus {
  return STATUS_BY_CODE[error.code] ?? HttpStatus.INTERNAL_SERVER_ERROR;
}

/**
 * Maps the queue's typed errors to HTTP answers in one place: 404 unknown (or not yours), 409
 * already ended, 400 bad input, 503 with `Retry-After` when the backend is unreachable. The body
 * is `{ statusCode, error, code, message }`. Register it globally (`app.useGlobalFilters`).
 */
@Catch(JobQueueError)
export class JobQueueExceptionFilter implements ExceptionFilter<JobQueueError> {
  private readonly logger = new Logger('JobQueue');

  catch(error: JobQueueError, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<ServerResponse>();
    const status = httpStatusOf(error);
    if (status >= 500 && status !== HttpStatus.SERVICE_UNAVAILABLE) this.logger.error(error.message, error.stack);
    if (response.headersSent) {
      response.end();
      return;
    }
    const headers: Record<string, string> = { 'Content-Type': 'application/json; charset=utf-8' };
    if (error instanceof JobQueueUnavailableError) headers['Retry-After'] = String(error.retryAfterSeconds);
    response
      .writeHead(status, headers)
      .end(JSON.stringify({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', code: error.code, message: error.message }));
  }
}
