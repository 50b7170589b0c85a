import { BusyStreamPause } from '../src/backends/bullmq/foreign-workers/busy-stream-pause.js';

/** Feeds `reads` (entries, gap in ms since the read before) and returns the pause decided after each. */
function pauses(reads: Array<[entries: number, gapMs: number]>, pause = new BusyStreamPause(), start = 0): number[] {
  let now = start;
  return reads.map(([entries, gapMs]) => pause.afterRead(entries, (now += gapMs)));
}

const steady = (count: number, entries: number, gapMs: number): Array<[number, number]> =>
  Array.from({ length: count }, () => [entries, gapMs]);

/**
 * When the foreign-worker bridge waits before its next read of BullMQ's events streams: only while
 * they are busy (above about 1,500 entries a second), never at the steady 1,000 updates a second
 * whose latency the bench measures.
 */
describe('BusyStreamPause: waits between reads only while the streams are busy', () => {
  it('a steady 1,000 entries a second, one per read, is read at once every time', () => {
    expect(pauses(steady(2000, 1, 1)).filter(Boolean)).toEqual([]);
  });

  it('a steady 1,000 a second after a 40 ms pause of the reader (40 entries in one read) still is', () => {
    const reads: Array<[number, number]> = [...steady(500, 1, 1), [40, 40], ...steady(500, 1, 1)];
    expect(pauses(reads).filter(Boolean)).toEqual([]);
  });

  it('so is one after a 40 ms pause of the worker, which then sends the 40 updates it owes within 8 ms', () => {
    const reads: Array<[number, number]> = [
      ...steady(500, 1, 1),
      ...steady(20, 2, 0.4).map(([n], i): [number, number] => [n, i ? 0.4 : 40]),
      ...steady(500, 1, 1),
    ];
    expect(pauses(reads).filter(Boolean)).toEqual([]);
  });

  it('a burst, two entries a read every 0.4 ms (5,000 a second), waits 2 ms after each read within 20 ms', () => {
    const decided = pauses([...steady(300, 1, 1), ...steady(200, 2, 0.4)]);
    expect(decided.slice(0, 300).filter(Boolean)).toEqual([]);
    // Within 20 ms of the burst's start (50 reads) every read is followed by the wait.
    expect(decided.slice(350)).toEqual(Array(150).fill(2));
  });

  it('reads of a busy stream during the waits (10 entries every 2.2 ms) keep it waiting', () => {
    expect(pauses([...steady(200, 2, 0.4), ...steady(500, 10, 2.2)]).slice(200)).toEqual(Array(500).fill(2));
  });

  it('a backlog read in full batches (a takeover) waits between them; an empty read never waits', () => {
    const pause = new BusyStreamPause();
    expect(pauses(steady(5, 500, 3), pause)).toEqual([2, 2, 2, 2, 2]);
    expect(pause.afterRead(0, 12)).toBe(0);
  });

  it('once the burst is over the rate decays: single entries 10 ms apart are read at once again within 100 ms', () => {
    const decided = pauses([...steady(200, 2, 0.4), ...steady(30, 1, 10)]);
    expect(decided.slice(200 + 10)).toEqual(Array(20).fill(0));
  });
});
