import 'reflect-metadata';
import { validateJobQueueOptions } from '@app/job-queue';

describe('smoke', () => {
  it('validates', () => {
    expect(() => validateJobQueueOptions({ backend: 'nope' })).toThrow(/"backend" must be one of "memory", "bullmq" \(got "nope"\)/);
  });
});
