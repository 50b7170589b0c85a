import type { JobScripts } from './job-scripts.js';

/**
 * Records that clients of this process still read jobs enqueued with `abandonAfterMs` while they
 * wait for the next event (a follower, a long-poll): one touch per job every third of its
 * `abandonAfterMs`, however many clients wait on it here and however many events they receive.
 */
export class ReadKeepAlive {
  private readonly held = new Map<string, { refs: number; timer: NodeJS.Timeout }>();

  constructor(private readonly scripts: JobScripts) {}

  /** Keeps the job of `metaKey` read until the returned release is called. */
  hold(metaKey: string, abandonAfterMs: number): () => void {
    let entry = this.held.get(metaKey);
    if (!entry) {
      const touch = (): void => void this.scripts.touchRead(metaKey).catch(() => undefined);
      const timer = setInterval(touch, Math.max(250, Math.floor(abandonAfterMs / 3)));
      timer.unref();
      entry = { refs: 0, timer };
      this.held.set(metaKey, entry);
    }
    const held = entry;
    held.refs++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--held.refs > 0) return;
      clearInterval(held.timer);
      this.held.delete(metaKey);
    };
  }

  close(): void {
    for (const { timer } of this.held.values()) clearInterval(timer);
    this.held.clear();
  }
}
