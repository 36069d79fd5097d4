/**
 * Splits the Docker engine's multiplexed attach stream (no TTY) into stdout and stderr. Each frame
 * is an 8-byte header (stream type, three zero bytes, big-endian payload length) and its payload;
 * frames arrive cut at arbitrary points. Payloads are passed on as they arrive, one piece per run
 * of frames on the same stream within one chunk the engine sent: a job's `write()`s are small
 * frames (often 4 to 16 KiB) and every piece costs its consumers a decode, a mask scan, time stamps
 * and a write of their own, so frames read together are delivered together, as one view of the
 * caller's chunk (see write). Only a cut header is kept between chunks.
 */
import type { OutputStream } from '../executor.js';

const HEADER = 8;

export class StreamDemuxer {
  /** A header cut by the stream: its first bytes, copied (at most 7). */
  private header = Buffer.alloc(HEADER);
  private headerBytes = 0;
  /** Payload bytes of the current frame still to come, and its stream. */
  private remaining = 0;
  private stream: OutputStream = 'stdout';

  constructor(private readonly onFrame: (stream: OutputStream, payload: Buffer) => void) {}

  /**
   * Takes the next chunk of the stream. The chunk is changed: the payloads of a run of frames
   * are moved together over the headers between them (one memmove each, no new buffer), so the
   * caller must not use it afterwards; what is passed on are views of it.
   */
  write(chunk: Buffer): void {
    let at = 0;
    /** The payload of `this.stream` read from this chunk and not passed on yet: [start, end). */
    let start = 0;
    let end = 0;
    const pass = (): void => {
      if (end > start) this.onFrame(this.stream, chunk.subarray(start, end));
      start = at;
      end = at;
    };
    while (at < chunk.length) {
      if (this.remaining > 0) {
        const until = Math.min(chunk.length, at + this.remaining);
        this.remaining -= until - at;
        if (end === start) {
          start = at;
          end = at;
        } else if (at !== end) {
          chunk.copyWithin(end, at, until);
        }
        end += until - at;
        at = until;
        continue;
      }
      let header: Buffer;
      if (this.headerBytes === 0 && chunk.length - at >= HEADER) {
        header = chunk.subarray(at, at + HEADER);
        at += HEADER;
      } else {
        const take = Math.min(HEADER - this.headerBytes, chunk.length - at);
        chunk.copy(this.header, this.headerBytes, at, at + take);
        this.headerBytes += take;
        at += take;
        if (this.headerBytes < HEADER) break;
        this.headerBytes = 0;
        header = this.header;
      }
      // Type 1 is stdout, 2 stderr; 0 (stdin echo) never happens without a TTY and stdin.
      const stream = header[0] === 2 ? 'stderr' : 'stdout';
      // Read before a payload may be moved over it.
      const length = header.readUInt32BE(4);
      if (stream !== this.stream) pass();
      this.stream = stream;
      this.remaining = length;
    }
    pass();
  }

  /** Bytes of an incomplete frame still held (a cut header; payloads are never held). */
  get pendingBytes(): number {
    return this.headerBytes;
  }
}
