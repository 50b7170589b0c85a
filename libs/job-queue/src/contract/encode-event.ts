import { InvalidEventError } from '../errors/invalid-event.error.js';
import { RESERVED_EVENT_TYPES } from './job-event.js';

const EVENT_TYPE_PATTERN = /^[A-Za-z0-9_.:-]{1,100}$/;

/**
 * Validates a handler event and returns its data as JSON text. Shared by both backends so that a
 * handler gets the same {@link InvalidEventError} wherever it runs, and nothing bad is stored.
 */
export function encodeHandlerEvent(type: unknown, data: unknown, maxEventBytes: number): string {
  if (typeof type !== 'string' || !EVENT_TYPE_PATTERN.test(type)) {
    throw new InvalidEventError(
      `Event type ${JSON.stringify(String(type).slice(0, 100))} must be 1 to 100 letters, digits, "_", ".", ":" or "-"`,
    );
  }
  if ((RESERVED_EVENT_TYPES as readonly string[]).includes(type)) {
    throw new InvalidEventError(`Event type "${type}" is reserved for the job lifecycle`);
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(data === undefined ? null : data);
  } catch (error) {
    throw new InvalidEventError(`Data of event "${type}" is not JSON-serializable: ${(error as Error).message}`, { cause: error });
  }
  const problem = jsonProblem(type, json, maxEventBytes);
  if (problem) throw new InvalidEventError(problem);
  return json!;
}

/** Why the JSON text of an event's data cannot be stored, or `undefined` when it can. */
function jsonProblem(type: string, json: string | undefined, maxEventBytes: number): string | undefined {
  if (json === undefined) return `Data of event "${type}" is not JSON-serializable`;
  // Length in UTF-16 units bounds the UTF-8 size from below and above by 3x; measure only when close.
  if (json.length * 3 > maxEventBytes && Buffer.byteLength(json) > maxEventBytes) {
    return `Data of event "${type}" is ${Buffer.byteLength(json)} bytes, over maxEventBytes (${maxEventBytes})`;
  }
  return undefined;
}

/** The `gap` event that stands for a processor call the stream cannot carry. */
function unbridged(type: 'progress' | 'log', problem: string): { type: string; json: string } {
  return { type: 'gap', json: JSON.stringify({ reason: `a ${type} call was not bridged: ${problem}` }) };
}

/**
 * Encodes a processor's `updateProgress` or `log` call as an event, or returns `undefined` when
 * there is nothing to bridge: a value `JSON.stringify` throws on (a `bigint`, a cycle), which
 * BullMQ refuses the same way. A value BullMQ takes but the stream cannot carry (over
 * `maxEventBytes`, or without a JSON form, like a function) becomes a `gap` event that says so,
 * instead of an error thrown into the processor or a silent hole.
 */
export function encodeProcessorCall(
  type: 'progress' | 'log',
  data: unknown,
  maxEventBytes: number,
): { type: string; json: string } | undefined {
  try {
    return { type, json: encodeHandlerEvent(type, data, maxEventBytes) };
  } catch (error) {
    // encodeHandlerEvent gives a cause only when JSON.stringify itself threw.
    if (error instanceof InvalidEventError && error.cause !== undefined) return undefined;
    return unbridged(type, (error as Error).message);
  }
}

/**
 * {@link encodeProcessorCall} for a call whose value is JSON text already (what BullMQ's
 * `updateProgress` sends to Redis, `undefined` where `JSON.stringify` gave none): the same event,
 * or the same `gap` event, without serializing the value a second time.
 */
export function encodeProcessorJson(
  type: 'progress' | 'log',
  json: string | undefined,
  maxEventBytes: number,
): { type: string; json: string } {
  const problem = jsonProblem(type, json, maxEventBytes);
  return problem ? unbridged(type, problem) : { type, json: json! };
}

/** Turns a handler's thrown value into the `{ message }` of a `failed` event. */
export function errorMessageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}
