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
  abandonAfterMs: integerField('abandonAfterMs', 1000, 3_600_000).optional(),
}).refine((input) => input.failAtStep === undefined || input.failAtStep <= input.steps, {
  message: 'failAtStep must not be greater than steps',
});

/** A build request: the job's input, and how it is to be run. */
export interface BuildRequest {
  input: BuildInput;
  /** Cancel the build once no client has read it for this long (1000..3600000 ms). */
  abandonAfterMs?: number;
}

/**
 * Validates a build request body (absent means all defaults).
 *
 * @throws InvalidArgumentError listing every problem.
 */
export function parseBuildRequest(body: unknown): BuildRequest {
  const { abandonAfterMs, ...input } = parseBody(schema, body);
  return { input, abandonAfterMs };
}
