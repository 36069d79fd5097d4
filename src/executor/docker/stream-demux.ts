/**
 * Splits the Docker engine's multiplexed attach stream (no TTY) into stdout and stderr. Each frame
 * is an 8-byte header (stream type, three zero bytes, big-endian payload length) and its payload;
 * frames arrive cut at arbitrary points, so partial headers and payloads are carried over.
 */
import type { OutputStream } from '../executor.js';

const HEADER = 8;

export class StreamDemuxer {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (stream: OutputStream, payload: Buffer) => void) {}

  write(chunk: Buffer): void {
    let data = this.buffered.length > 0 ? Buffer.concat([this.buffered, chunk]) : chunk;
    while (data.length >= HEADER) {
      const type = data[0];
      const size = data.readUInt32BE(4);
      if (data.length < HEADER + size) break;
      const payload = data.subarray(HEADER, HEADER + size);
      // Type 1 is stdout, 2 stderr; 0 (stdin echo) never happens without a TTY and stdin.
      if (size > 0) this.onFrame(type === 2 ? 'stderr' : 'stdout', payload);
      data = data.subarray(HEADER + size);
    }
    // Keep a copy: `data` may point into the caller's buffer.
    this.buffered = Buffer.from(data);
  }

  /** Bytes of an incomplete frame still waiting for the rest. */
  get pendingBytes(): number {
    return this.buffered.length;
  }
}
