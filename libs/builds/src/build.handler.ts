import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { JobHandler, type JobContext } from 'nestjs-job-streams';
import type { BuildInput } from './build-input.js';

/** Name under which the demo build job is enqueued. */
export const BUILD_JOB = 'build';

/**
 * The demo build: `steps` steps of `stepMs` each; every step emits `step` `{ index, total }`
 * and then `tokensPerStep` `token` events spread over the step. Stops within a step on cancel.
 */
@Injectable()
export class BuildHandler {
  @JobHandler(BUILD_JOB)
  async run(context: JobContext<BuildInput>): Promise<{ steps: number }> {
    const { steps, stepMs, tokensPerStep, failAtStep } = context.data;
    const pause = stepMs / (tokensPerStep + 1);
    for (let index = 1; index <= steps; index++) {
      context.signal.throwIfAborted();
      await context.emit('step', { index, total: steps });
      if (index === failAtStep) throw new Error(`Build failed at step ${index} of ${steps}`);
      for (let token = 1; token <= tokensPerStep; token++) {
        if (pause > 0) await sleep(pause, undefined, { signal: context.signal });
        await context.emit('token', { step: index, index: token, text: `token ${token} of step ${index}` });
      }
      if (pause > 0) await sleep(pause, undefined, { signal: context.signal });
    }
    return { steps };
  }
}
