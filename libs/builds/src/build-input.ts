import { InvalidArgumentError } from '@app/job-queue';
import { z } from 'zod';

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

const int = (name: string, min: number, max: number) =>
  z
    .number({ error: `${name} must be a number` })
    .int(`${name} must be an integer`)
    .min(min, `${name} must be at least ${min}`)
    .max(max, `${name} must be at most ${max}`);

const schema = z
  .strictObject(
    {
      steps: int('steps', 1, 10_000).default(5),
      stepMs: int('stepMs', 0, 60_000).default(200),
      tokensPerStep: int('tokensPerStep', 0, 1000).default(0),
      failAtStep: int('failAtStep', 1, 10_000).optional(),
    },
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : 'the body must be a JSON object',
    },
  )
  .refine((input) => input.failAtStep === undefined || input.failAtStep <= input.steps, {
    message: 'failAtStep must not be greater than steps',
  });

/**
 * Validates a build request body (absent means all defaults).
 *
 * @throws InvalidArgumentError listing every problem.
 */
export function parseBuildInput(body: unknown): BuildInput {
  const result = schema.safeParse(body === undefined || body === null ? {} : body);
  if (!result.success) throw new InvalidArgumentError(result.error.issues.map((issue) => issue.message).join('; '));
  return result.data;
}
