import {
  context,
  createTraceState,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import { isControlFlowError, type AttemptOutcome } from '../contract/attempt-verdict.js';
import { errorMessageOf } from '../contract/encode-event.js';

/** The tracer's name: the package's. */
export const JOB_TRACER_NAME = 'nestjs-job-streams';

/**
 * One tracer for the process. `trace.getTracer` hands out a proxy that finds the SDK's tracer once
 * one is registered (also after this module was loaded); without an SDK every span is a no-op.
 */
const tracer = trace.getTracer(JOB_TRACER_NAME);

/** The W3C trace context a job carries from its enqueue to every attempt, wherever it runs. */
export interface TraceCarrier {
  traceparent: string;
  tracestate?: string;
}

/** Version 00 of the W3C `traceparent` header: version, trace id, parent span id, flags. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The `traceparent` (and `tracestate`) of `spanContext`, or `undefined` when it is not a valid
 * span context. Built by hand, not by the app's propagator: an app may register none.
 */
export function carrierOf(spanContext: SpanContext | undefined): TraceCarrier | undefined {
  if (!spanContext || !isSpanContextValid(spanContext)) return undefined;
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0');
  const traceparent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
  const tracestate = spanContext.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** The trace id of a stored `traceparent`, or `undefined` when there is none or it is malformed. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  if (!traceparent) return undefined;
  return TRACEPARENT.exec(traceparent)?.[1];
}

/** A context whose (remote) parent is the carried span, or `undefined` when nothing valid is carried. */
export function contextOf(carrier: TraceCarrier | undefined): Context | undefined {
  const match = carrier && TRACEPARENT.exec(carrier.traceparent);
  if (!match) return undefined;
  const spanContext: SpanContext = {
    traceId: match[1],
    spanId: match[2],
    traceFlags: parseInt(match[3], 16),
    isRemote: true,
    traceState: carrier.tracestate ? createTraceState(carrier.tracestate) : undefined,
  };
  return isSpanContextValid(spanContext) ? trace.setSpanContext(ROOT_CONTEXT, spanContext) : undefined;
}

/** What every span of a job says about it. */
export interface JobSpanAttributes {
  /** The backend: `bullmq` or `memory`. */
  system: string;
  queue: string;
  name: string;
  id?: string;
  attempt?: number;
}

/** Attribute names: OpenTelemetry's messaging conventions where one fits, `job.*` for the rest. */
export const JOB_SPAN_ATTRIBUTES = {
  system: 'messaging.system',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  queue: 'messaging.destination.name',
  id: 'messaging.message.id',
  name: 'job.name',
  attempt: 'job.attempt',
  state: 'job.state',
} as const;

function attributesOf(job: JobSpanAttributes, operationType: string, operationName: string): Attributes {
  const attributes: Attributes = {
    [JOB_SPAN_ATTRIBUTES.system]: job.system,
    [JOB_SPAN_ATTRIBUTES.operationType]: operationType,
    [JOB_SPAN_ATTRIBUTES.operationName]: operationName,
    [JOB_SPAN_ATTRIBUTES.queue]: job.queue,
    [JOB_SPAN_ATTRIBUTES.name]: job.name,
  };
  if (job.id !== undefined) attributes[JOB_SPAN_ATTRIBUTES.id] = job.id;
  if (job.attempt !== undefined) attributes[JOB_SPAN_ATTRIBUTES.attempt] = job.attempt;
  return attributes;
}

const INVALID: SpanContext = { traceId: '', spanId: '', traceFlags: 0 };

/** Marks `span` failed with `error`. */
export function recordFailure(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : errorMessageOf(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessageOf(error) });
}

/**
 * Runs `add` (which stores the job with the returned carrier) inside an `enqueue` span (producer),
 * when the caller is inside a valid span context; outside of one nothing is traced and nothing is
 * carried, so a job enqueued without a trace has no trace id on its events.
 */
export async function tracedEnqueue<T extends { id: string }>(
  job: JobSpanAttributes,
  add: (carrier: TraceCarrier | undefined) => Promise<T>,
): Promise<T> {
  const active = context.active();
  if (!isSpanContextValid(trace.getSpanContext(active) ?? INVALID)) return add(undefined);
  const span = tracer.startSpan('enqueue', { kind: SpanKind.PRODUCER, attributes: attributesOf(job, 'send', 'enqueue') }, active);
  try {
    // A span that the SDK does not record (sampled out, or no SDK) still has a valid context to carry.
    const info = await context.with(trace.setSpan(active, span), () => add(carrierOf(span.spanContext())));
    span.setAttribute(JOB_SPAN_ATTRIBUTES.id, info.id);
    return info;
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/**
 * The span of one attempt (consumer), parented on the context the job carries (a new trace when it
 * carries none). Run the handler with {@link AttemptSpan.run} so that its own spans nest under it.
 */
export class AttemptSpan {
  private readonly span: Span;
  private readonly context: Context;
  private failed = false;

  constructor(job: JobSpanAttributes & { id: string; attempt: number }, carrier: TraceCarrier | undefined) {
    const parent = contextOf(carrier) ?? ROOT_CONTEXT;
    this.span = tracer.startSpan('attempt', { kind: SpanKind.CONSUMER, attributes: attributesOf(job, 'process', 'attempt') }, parent);
    this.context = trace.setSpan(parent, this.span);
  }

  /** Runs `work` inside the attempt's context. */
  run<T>(work: () => T): T {
    return context.with(this.context, work);
  }

  /**
   * Records the attempt's failure (once: the first error is the attempt's). BullMQ's "not now"
   * errors (the job was delayed, rate limited, waits for children) are no failure: an event says so.
   */
  fail(error: unknown): void {
    if (this.failed) return;
    this.failed = true;
    if (isControlFlowError(error)) this.span.addEvent('deferred', { 'exception.type': (error as Error).name });
    else recordFailure(this.span, error);
  }

  end(): void {
    this.span.end();
  }

  /**
   * Runs one attempt in this span, in the one order every backend and every kind of work follows:
   * `work` inside the span; its outcome taken (its value, or what it threw, which the span records);
   * then `end` with that outcome, inside the span too (the events the work left, then the terminal
   * event or the retry). The span ends however the attempt ends. Resolves to what `end` returns.
   */
  async attempt<T>(work: () => Promise<unknown>, end: (outcome: AttemptOutcome) => Promise<T> | T): Promise<T> {
    try {
      let outcome: AttemptOutcome;
      try {
        outcome = { ok: true, value: await this.run(work) };
      } catch (error) {
        outcome = { ok: false, error };
        this.fail(error);
      }
      return await this.run(() => end(outcome));
    } catch (error) {
      this.fail(error);
      throw error;
    } finally {
      this.end();
    }
  }
}

/**
 * Runs `write` (the terminal write of a job) inside a `finish` span, a child of the active span:
 * of the attempt on a worker, of the caller's request for a cancel.
 */
export function tracedFinish<T>(job: JobSpanAttributes & { state: string }, write: () => T): T {
  const span = tracer.startSpan('finish', {
    kind: SpanKind.INTERNAL,
    attributes: { ...attributesOf(job, 'settle', 'finish'), [JOB_SPAN_ATTRIBUTES.state]: job.state },
  });
  let result: T;
  try {
    result = context.with(trace.setSpan(context.active(), span), write);
  } catch (error) {
    recordFailure(span, error);
    span.end();
    throw error;
  }
  if (result instanceof Promise) {
    return result.then(
      (value: unknown) => {
        span.end();
        return value;
      },
      (error: unknown) => {
        recordFailure(span, error);
        span.end();
        throw error;
      },
    ) as T;
  }
  span.end();
  return result;
}
