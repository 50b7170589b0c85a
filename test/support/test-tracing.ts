import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace';

/** Calls back on every span that ends, so that a test waits for a span instead of for time. */
class EndedSpanWatcher implements SpanProcessor {
  readonly watchers = new Set<(span: ReadableSpan) => void>();
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    for (const watch of this.watchers) watch(span);
  }
  async forceFlush(): Promise<void> {}
  async shutdown(): Promise<void> {}
}

/**
 * An OpenTelemetry SDK for one test file, registered globally as an application would: an
 * AsyncLocalStorage context manager and a tracer provider whose finished spans are kept in memory.
 */
export class TestTracing {
  readonly exporter = new InMemorySpanExporter();
  private readonly watcher = new EndedSpanWatcher();
  private readonly provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: this.exporter }), this.watcher] });
  private readonly contextManager = new AsyncLocalStorageContextManager();

  static register(): TestTracing {
    const tracing = new TestTracing();
    context.setGlobalContextManager(tracing.contextManager.enable());
    trace.setGlobalTracerProvider(tracing.provider);
    return tracing;
  }

  /** The spans that ended so far. */
  spans(): ReadableSpan[] {
    return this.exporter.getFinishedSpans();
  }

  /** Resolves with the first ended span (already or from now on) that `matches`; rejects after `timeoutMs`. */
  waitForSpan(matches: (span: ReadableSpan) => boolean, what: string, timeoutMs = 10_000): Promise<ReadableSpan> {
    const found = this.spans().find(matches);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.watcher.watchers.delete(watch);
        reject(new Error(`no span ${what} ended within ${timeoutMs} ms`));
      }, timeoutMs);
      const watch = (span: ReadableSpan): void => {
        if (!matches(span)) return;
        clearTimeout(timer);
        this.watcher.watchers.delete(watch);
        resolve(span);
      };
      this.watcher.watchers.add(watch);
    });
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown();
    trace.disable();
    context.disable();
  }
}
