/** The attempts a BullMQ job may make, from its stored `opts` JSON (BullMQ's default, 1, when it has none or it cannot be read). */
export function attemptsOf(opts: string | null | undefined): number {
  try {
    return Math.max(1, Number((JSON.parse(opts ?? '{}') as { attempts?: number } | null)?.attempts) || 1);
  } catch {
    return 1;
  }
}
