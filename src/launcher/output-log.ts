/**
 * The stored copy of a run's output: masked text, bounded to head + tail (see domain/log-bound.ts).
 * The head is appended to the file as it arrives; the tail is kept in memory (at most half the
 * limit) and written when the run ends.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { HeadTailLog } from '../domain/log-bound.js';

export class OutputLog {
  private readonly bound: HeadTailLog;
  private readonly file: WriteStream;
  private total = 0;

  constructor(
    readonly path: string,
    limitBytes: number,
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.bound = new HeadTailLog(limitBytes);
    // Masked output only, but still private to the user running berth.
    this.file = createWriteStream(path, { mode: 0o600 });
    this.file.on('error', () => undefined);
  }

  append(text: string): void {
    const bytes = Buffer.from(text, 'utf8');
    this.total += bytes.length;
    const head = this.bound.append(bytes);
    if (head.length > 0) this.file.write(head);
  }

  get bytes(): number {
    return this.total;
  }

  get bytesCut(): number {
    return this.bound.bytesCut;
  }

  async close(): Promise<void> {
    const rest = this.bound.finish();
    await new Promise<void>((resolve) => {
      this.file.end(rest, () => resolve());
      this.file.once('error', () => resolve());
    });
  }
}
