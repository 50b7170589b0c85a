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
}).refine((input) => input.failAtPage === undefined || input.failAtPage <= input.pages, {
  message: 'failAtPage must not be greater than pages',
});

/**
 * Validates a report request body (absent means all defaults).
 *
 * @throws InvalidArgumentError listing every problem.
 */
export function parseReportInput(body: unknown): ReportInput {
  const { pages, pageMs, failAtPage } = parseBody(schema, body);
  return failAtPage === undefined ? { pages, pageMs } : { pages, pageMs, failAtPage };
}
