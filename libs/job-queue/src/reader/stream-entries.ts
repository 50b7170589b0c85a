import type { JobEvent } from '../contract/job-event.js';
import { timestampOf } from './stream-id.js';

/** A stream entry as Redis returns it. */
export type RawEntry = [id: string, fields: string[]];

/**
 * Turns stream entries into events (fields `type` and `data`). `traceId` is the job's (one per
 * job, known to the reader from the job's metadata, so entries do not carry it).
 */
export function toEvents(entries: RawEntry[], traceId?: string): JobEvent[] {
  return entries.map(([id, fields]) => {
    let type = '';
    let data = 'null';
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i] === 'type') type = fields[i + 1];
      else if (fields[i] === 'data') data = fields[i + 1];
    }
    const event: JobEvent = { id, type, data: JSON.parse(data) as unknown, ts: timestampOf(id) };
    if (traceId !== undefined) event.traceId = traceId;
    return event;
  });
}

/** Approximate sizes of stream entries: the lengths of their id and field values. */
export function sizesOf(entries: RawEntry[]): number[] {
  return entries.map(([id, fields]) => fields.reduce((sum, field) => sum + field.length, id.length));
}
