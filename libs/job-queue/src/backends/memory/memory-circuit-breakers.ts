import {
  circuitBreakerFor,
  type BreakerAdmission,
  type BreakerOutcome,
  type CircuitBreakerOptions,
  type CircuitBreakerState,
  type JobWaitingFor,
} from '../../contract/circuit-breaker.js';
import type { ResolvedJobQueueOptions } from '../../options/job-queue-module-options.js';

interface Breaker {
  state: 'open' | 'half-open';
  openUntil: number;
  /** The token of the job whose attempt is the probe (half-open). */
  probe?: string;
}

/**
 * The circuit breakers of the memory backend: the same rules as the Redis scripts
 * (`breaker-*.lua`), in this process. A closed breaker with no recent failure has no entry.
 */
export class MemoryCircuitBreakers {
  private readonly breakers = new Map<string, Breaker>();
  /** Failure times by job name, each under the attempt it stands for (a second report of one attempt counts once). */
  private readonly failures = new Map<string, Map<string, number>>();
  /** Names a breaker was asked about, for {@link states}. */
  private readonly seen = new Set<string>();

  constructor(private readonly options: ResolvedJobQueueOptions) {}

  configFor(name: string): CircuitBreakerOptions | undefined {
    return circuitBreakerFor(this.options, name);
  }

  /** May the job `token` of name `name` start now? Claims the probe when the cool-down is over. */
  admit(name: string, token: string, now = Date.now()): BreakerAdmission {
    const config = this.configFor(name);
    if (!config) return { admitted: true, probe: false };
    this.seen.add(name);
    const breaker = this.breakers.get(name);
    if (!breaker) return { admitted: true, probe: false };
    if (breaker.state === 'open') {
      if (now < breaker.openUntil) return { admitted: false, retryAt: breaker.openUntil, until: breaker.openUntil };
      breaker.state = 'half-open';
      breaker.probe = token;
      return { admitted: true, probe: true };
    }
    if (breaker.probe === token) return { admitted: true, probe: true };
    // Half-open: the probe's outcome decides; its end wakes the queue (no time to retry at).
    return { admitted: false, retryAt: Number.POSITIVE_INFINITY };
  }

  /** Records how an admitted attempt (`attemptKey`, unique per attempt) of job `token` ended. */
  record(name: string, token: string, attemptKey: string, outcome: BreakerOutcome, now = Date.now()): void {
    const config = this.configFor(name);
    if (!config) return;
    const breaker = this.breakers.get(name);
    if (breaker?.state === 'half-open' && breaker.probe === token) {
      breaker.probe = undefined;
      if (outcome === 'success') {
        this.breakers.delete(name);
        this.failures.delete(name);
        return;
      }
      breaker.state = 'open';
      // A released probe (cancelled, handed back) proves nothing: the next job probes at once.
      breaker.openUntil = outcome === 'failure' ? now + config.coolDownMs : now;
      if (outcome === 'failure') this.recent(name, config, now).set(attemptKey, now);
      return;
    }
    if (outcome !== 'failure') return;
    const recent = this.recent(name, config, now);
    if (!recent.has(attemptKey)) recent.set(attemptKey, now);
    if (!breaker && recent.size >= config.failures) this.breakers.set(name, { state: 'open', openUntil: now + config.coolDownMs });
  }

  /** Why a queued job `token` of name `name` waits, when a breaker holds it back. */
  waitingFor(name: string, token: string): JobWaitingFor | undefined {
    if (!this.configFor(name)) return undefined;
    const breaker = this.breakers.get(name);
    if (!breaker) return undefined;
    if (breaker.state === 'open') return { circuitBreaker: name, until: breaker.openUntil };
    return breaker.probe === token ? undefined : { circuitBreaker: name };
  }

  /** The breakers of `names` (plus every name asked about so far), sorted by name. */
  states(names: Iterable<string>, now = Date.now()): CircuitBreakerState[] {
    const all = new Set([...names, ...this.seen, ...Object.keys(this.options.circuitBreakers)]);
    const states: CircuitBreakerState[] = [];
    for (const name of [...all].sort()) {
      const config = this.configFor(name);
      if (!config) continue;
      const breaker = this.breakers.get(name);
      const state: CircuitBreakerState = {
        name,
        state: breaker?.state ?? 'closed',
        recentFailures: this.failures.has(name) ? this.recent(name, config, now).size : 0,
        options: { ...config },
      };
      if (breaker?.state === 'open') state.openUntil = breaker.openUntil;
      states.push(state);
    }
    return states;
  }

  /** The failures of `name` within its window (older ones dropped). */
  private recent(name: string, config: CircuitBreakerOptions, now: number): Map<string, number> {
    let recent = this.failures.get(name);
    if (!recent) this.failures.set(name, (recent = new Map()));
    for (const [key, at] of recent) if (at <= now - config.windowMs) recent.delete(key);
    return recent;
  }
}
