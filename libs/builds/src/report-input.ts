import { integerField, parseBody, strictBody } from './json-body-schema.js';

/** Input of the demo report job, and exactly the data of its BullMQ job. */
export interface ReportInput {
  /** Number of pages, 1..1000 (default 5). */
  pages: number;
  /** Time each page takes in ms, 0..60000 (default 200). */
  pageMs: number;
  /** The 1-based page after whose progress and log the processor throws (1..pages). */
  failAtPage?: number;
}

const schema = strictBody({
  pages: integerField('pages', 1, 1000).default(5),
  pageMs: integerField('pageMs', 0, 60_000).default(200),
  failAtPage: integerField('failAtPage', 1, 1000).optional(),
  attempts: integerField('attempts', 1, 10).default(1),
  backoffMs: integerField('backoffMs', 0, 60_000).default(0),
}).refine((input) => input.failAtPage === undefined || input.failAtPage <= input.pages, {
  message: 'failAtPage must not be greater than pages',
});

/**
 * A report request: the job's data, and how BullMQ is to run it (job options, not data, so that
 * the job's data stays exactly {@link ReportInput}).
 */
export interface ReportRequest {
  input: ReportInput;
  /** Attempts in all, 1..10 (default 1). */
  attempts: number;
  /** Fixed delay before each retry in ms, 0..60000 (default 0). */
  backoffMs: number;
}

/**
 * Validates a report request body (absent means all defaults).
 *
 * @throws InvalidArgumentError listing every problem.
 */
export function parseReportRequest(body: unknown): ReportRequest {
  const { pages, pageMs, failAtPage, attempts, backoffMs } = parseBody(schema, body);
  const input: ReportInput = failAtPage === undefined ? { pages, pageMs } : { pages, pageMs, failAtPage };
  return { input, attempts, backoffMs };
}
