import { retryAfterMs, retryDelayMs, SseParser } from 'nestjs-job-streams-client';

describe('SseParser', () => {
  const stream =
    'id: 1-0\nevent: started\ndata: {"attempt":1}\n\n: ping\n\nid: 1-1\r\nevent: step\r\ndata: {"index":1,\r\ndata: "total":2}\r\n\r\nid: 1-2\revent: completed\rdata: {}\r\r';
  const expected = [
    { id: '1-0', event: 'started', data: '{"attempt":1}' },
    { id: '1-1', event: 'step', data: '{"index":1,\n"total":2}' },
    { id: '1-2', event: 'completed', data: '{}' },
  ];

  it('parses frames with LF, CRLF and CR line ends, multi-line data, and skips comments', () => {
    expect(new SseParser().push(stream)).toEqual(expected);
  });

  it.each([1, 2, 3, 7])('gives the same frames whatever the chunk size (%i characters)', (size) => {
    const parser = new SseParser();
    const frames = [];
    for (let i = 0; i < stream.length; i += size) frames.push(...parser.push(stream.slice(i, i + size)));
    expect(frames).toEqual(expected);
  });

  it('keeps the last id for frames without one, and a frame without data dispatches nothing', () => {
    expect(new SseParser().push('id: 5\nevent: x\n\ndata: a\n\n')).toEqual([{ id: '5', event: 'message', data: 'a' }]);
  });
});

describe('retry delays', () => {
  it('grow exponentially with jitter up to maxMs', () => {
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = Math.min(4000, 100 * 2 ** (attempt - 1));
      const delay = retryDelayMs(attempt, { initialMs: 100, maxMs: 4000 });
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delay).toBeLessThanOrEqual(ceiling);
    }
  });

  it('honour Retry-After in seconds or as an HTTP date, never beyond maxMs', () => {
    expect(retryDelayMs(1, { initialMs: 10, maxMs: 10_000 }, '3')).toBe(3000);
    expect(retryDelayMs(1, { initialMs: 10, maxMs: 2000 }, '3')).toBe(2000);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(retryAfterMs('soon', now)).toBe(0);
    expect(retryAfterMs(null, now)).toBe(0);
  });
});
