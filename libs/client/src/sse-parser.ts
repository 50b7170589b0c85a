/** One dispatched Server-Sent Events frame. */
export interface SseFrame {
  id?: string;
  event: string;
  data: string;
}

/**
 * Incremental Server-Sent Events parser (the WHATWG event-stream format): feed it decoded text as
 * it arrives, in chunks cut anywhere, and it returns the frames completed so far. Comments (`: ping`)
 * are skipped; lines end with LF, CRLF or CR.
 */
export class SseParser {
  private buffer = '';
  private id?: string;
  private event = '';
  private data: string[] = [];
  /** Set when a chunk ended with CR: a LF starting the next chunk belongs to that line end. */
  private pendingCr = false;

  push(text: string): SseFrame[] {
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const frames: SseFrame[] = [];
    for (;;) {
      const end = this.buffer.search(/\r\n|\r|\n/);
      if (end === -1) break;
      const terminator = this.buffer.startsWith('\r\n', end) ? 2 : 1;
      if (terminator === 1 && this.buffer[end] === '\r' && end === this.buffer.length - 1) this.pendingCr = true;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + terminator);
      const frame = this.line(line);
      if (frame) frames.push(frame);
    }
    return frames;
  }

  private line(line: string): SseFrame | undefined {
    if (line === '') {
      if (!this.data.length) {
        this.event = '';
        return undefined;
      }
      const frame: SseFrame = { id: this.id, event: this.event || 'message', data: this.data.join('\n') };
      this.event = '';
      this.data = [];
      return frame;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    return undefined;
  }
}
