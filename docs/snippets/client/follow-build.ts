import { JobStreamsClient } from 'nestjs-job-streams-client';

/** Shows a build's events as they arrive, each once and in order, until its terminal event. */
export async function showBuild(jobId: string, session: { token: string }, render: (type: string, data: unknown) => void): Promise<void> {
  const client = new JobStreamsClient({
    baseUrl: 'https://api.example.com', // or several instances: ['http://a:3000', 'http://b:3000']
    token: () => session.token, // asked before every request
  });
  for await (const event of client.follow('builds', jobId)) {
    render(event.type, event.data);
  }
}
