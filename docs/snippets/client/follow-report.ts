import { JobStreamError, JobStreamsClient } from 'nestjs-job-streams-client';

/** Logs a report's events, each once and in order, until its terminal event. */
export async function followReport(jobId: string, session: { token: string }): Promise<void> {
  const client = new JobStreamsClient({
    baseUrl: 'https://api.example.com', // or several instances: ['http://a:3000', 'http://b:3000']
    token: () => session.token, // asked before every request; sent as `Authorization: Bearer ...`
  });

  try {
    for await (const event of client.follow<{ page: number }>('reports', jobId)) {
      console.log(event.id, event.type, event.data);
    }
  } catch (error) {
    // A refusal: 404 (unknown job, or not yours), 400 (a bad cursor), 401; or retries ran out.
    if (error instanceof JobStreamError) console.error(error.status, error.code, error.message);
    else throw error;
  }
}
