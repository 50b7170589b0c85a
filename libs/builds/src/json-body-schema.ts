import { InvalidArgumentError } from 'nestjs-job-streams';
import { z } from 'zod';

/** An integer field from `min` to `max`, with messages that name it. */
export function integerField(name: string, min: number, max: number) {
  return z
    .number({ error: `${name} must be a number` })
    .int(`${name} must be an integer`)
    .min(min, `${name} must be at least ${min}`)
    .max(max, `${name} must be at most ${max}`);
}

/** A JSON object with exactly these fields: unknown ones are named in the error. */
export function strictBody<Shape extends z.ZodRawShape>(shape: Shape) {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : 'the body must be a JSON object',
  });
}

/**
 * Validates a request body (absent means all defaults) against `schema`.
 *
 * @throws InvalidArgumentError listing every problem.
 */
export function parseBody<Output>(schema: z.ZodType<Output>, body: unknown): Output {
  const result = schema.safeParse(body === undefined || body === null ? {} : body);
  if (!result.success) throw new InvalidArgumentError(result.error.issues.map((issue) => issue.message).join('; '));
  return result.data;
}
