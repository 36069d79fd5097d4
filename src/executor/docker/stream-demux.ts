/**
 * Splits the Docker engine's multiplexed attach stream (no TTY) into stdout and stderr. Each frame
 * is an 8-byte header (stream type, three zero bytes, big-endian payload length) and its payload;
 * frames arrive cut at arbitrary points. A payload is passed on as it arrives, in pieces where the
 * stream cut it (views of the caller's chunk, never copied: this is the hot path of a job's
 * output, and its consumers take output in arbitrary pieces anyway); only a cut header is kept.
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
    while (at < chunk.length) {
      if (this.remaining > 0) {
        const end = Math.min(chunk.length, at + this.remaining);
        this.remaining -= end - at;
        this.onFrame(this.stream, chunk.subarray(at, end));
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
      this.stream = header[0] === 2 ? 'stderr' : 'stdout';
      this.remaining = header.readUInt32BE(4);
    }
  }

  /** Bytes of an incomplete frame still held (a cut header; payloads are never held). */
  get pendingBytes(): number {
    return this.headerBytes;
  }
}
