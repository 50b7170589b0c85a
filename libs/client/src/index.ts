export {
  JobStreamsClient,
  type JobStreamsClientOptions,
  type JobStreamTransport,
  type FollowJobOptions,
  type RetryInfo,
} from './job-streams-client.js';
export { JobStreamError } from './job-stream-error.js';
export { TERMINAL_TYPES, type JobStreamEvent } from './job-stream-event.js';
export { retryDelayMs, retryAfterMs, type BackoffOptions } from './backoff.js';
export { SseParser, type SseFrame } from './sse-parser.js';
