import { integerField, parseBody, strictBody } from './json-body-schema.js';

/** Input of the demo build job. */
export interface BuildInput {
  /** Number of steps, 1..10000 (default 5). */
  steps: number;
  /** Duration of each step in ms, 0..60000 (default 200). */
  stepMs: number;
  /** `token` events per step, 0..1000 (default 0). */
  tokensPerStep: number;
  /** The 1-based step that throws, if any (1..steps). */
  failAtStep?: number;
}

const schema = strictBody({
  steps: integerField('steps', 1, 10_000).default(5),
  stepMs: integerField('stepMs', 0, 60_000).default(200),
  tokensPerStep: integerField('tokensPerStep', 0, 1000).default(0),
  failAtStep: integerField('failAtStep', 1, 10_000).optional(),
}).refine((input) => input.failAtStep === undefined || input.failAtStep <= input.steps, {
  message: 'failAtStep must not be greater than steps',
});

/**
 * Validates a build request body (absent means all defaults).
 *
 * @throws InvalidArgumentError listing every problem.
 */
export function parseBuildInput(body: unknown): BuildInput {
  return parseBody(schema, body);
}
