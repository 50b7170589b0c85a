import { describe, expect, it } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { JobQueueTesting, JobQueueTestingModule } from 'nestjs-job-streams';
import { ReportHandler, ReportsController } from '../own-app/app.module.js';

describe('ReportsController', () => {
  it('starts a report that completes', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [JobQueueTestingModule.forRoot()], // JobQueueModule on the memory backend: no Redis
      providers: [ReportHandler],
      controllers: [ReportsController],
    }).compile();
    await moduleRef.init();
    try {
      const { jobId } = await moduleRef.get(ReportsController).start();
      const job = await moduleRef.get(JobQueueTesting).ended(jobId, { owner: 'alice' });
      expect(job).toMatchObject({ state: 'completed', result: { url: '/reports/2026-11.pdf' } });
      const events = await moduleRef.get(JobQueueTesting).eventsUntilEnd(jobId, { owner: 'alice' });
      expect(events.filter((event) => event.type === 'page')).toHaveLength(10);
    } finally {
      await moduleRef.close();
    }
  });
});
