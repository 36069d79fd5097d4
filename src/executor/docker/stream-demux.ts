/**
 * Splits the Docker engine's multiplexed attach stream (no TTY) into stdout and stderr. Each frame
 * is an 8-byte header (stream type, three zero bytes, big-endian payload length) and its payload;
 * frames arrive cut at arbitrary points. Payloads are passed on as they arrive, one piece per run
 * of frames on the same stream within one chunk the engine sent: a job's `write()`s are small
 * frames (often 4 to 16 KiB) and every piece costs its consumers a decode, a mask scan, time stamps
 * and a write of their own, so frames read together are delivered together. A lone piece is a view
 * of the caller's chunk; pieces joined are copied once. Only a cut header is kept between chunks.
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

  write(chunk: Buffer): void {
    let at = 0;
    /** Payload pieces of `this.stream` read from this chunk and not passed on yet. */
    const pieces: Buffer[] = [];
    while (at < chunk.length) {
      if (this.remaining > 0) {
        const end = Math.min(chunk.length, at + this.remaining);
        this.remaining -= end - at;
        pieces.push(chunk.subarray(at, end));
        at = end;
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
      if (stream !== this.stream) this.pass(pieces);
      this.stream = stream;
      this.remaining = header.readUInt32BE(4);
    }
    this.pass(pieces);
  }

  /** Passes the pieces on as one (a lone piece as it is), and empties the list. */
  private pass(pieces: Buffer[]): void {
    if (pieces.length === 0) return;
    this.onFrame(this.stream, pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces));
    pieces.length = 0;
  }

  /** Bytes of an incomplete frame still held (a cut header; payloads are never held). */
  get pendingBytes(): number {
    return this.headerBytes;
  }
}
