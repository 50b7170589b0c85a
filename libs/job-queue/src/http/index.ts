export { JobEventStreamer, type StreamEventsOptions, type PollEventsOptions } from './job-event-streamer.js';
export { JobQueueExceptionFilter, httpStatusOf } from './job-queue-exception.filter.js';
export { parseEventQuery, type EventQuery, type RawEventQuery } from './parse-event-query.js';
