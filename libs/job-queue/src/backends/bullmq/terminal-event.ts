import { errorMessageOf } from '../../contract/encode-event.js';

/**
 * The terminal event's data and the meta field (`result` or `error`) of an attempt's outcome:
 * `result` is JSON text (a completion), `error` what the work threw or BullMQ's failed reason.
 */
export function terminalOf(outcome: { result: string } | { error: unknown }): {
  data: string;
  field: { field: 'result' | 'error'; value: string };
} {
  if ('result' in outcome) return { data: `{"result":${outcome.result}}`, field: { field: 'result', value: outcome.result } };
  const error = JSON.stringify({ message: errorMessageOf(outcome.error) });
  return { data: `{"error":${error}}`, field: { field: 'error', value: error } };
}
