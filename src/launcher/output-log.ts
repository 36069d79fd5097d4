/**
 * The stored copy of a run's output: masked text, bounded to head + tail (see domain/log-bound.ts).
 * The head is appended to the file as it arrives; the tail is kept in memory (at most half the
 * limit) and written when the run ends. A file that cannot be written (a full disk, a state
 * directory that went away) never stops the job: the failure is kept and reported with the run,
 * and the live output is complete either way.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { HeadTailLog } from '../domain/log-bound.js';

export class OutputLog {
  private readonly bound: HeadTailLog;
  private readonly file: WriteStream | null = null;
  private total = 0;
  private error: NodeJS.ErrnoException | null = null;

  constructor(
    readonly path: string,
    limitBytes: number,
  ) {
    this.bound = new HeadTailLog(limitBytes);
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Masked output only, but still private to the user running berth.
      this.file = createWriteStream(path, { mode: 0o600 });
      this.file.on('error', (err) => {
        this.error ??= err;
      });
    } catch (err) {
      this.error = err as NodeJS.ErrnoException;
    }
  }

  append(text: string): void {
    const bytes = Buffer.from(text, 'utf8');
    this.total += bytes.length;
    const head = this.bound.append(bytes);
    if (head.length > 0 && this.error === null) this.file?.write(head);
  }

  get bytes(): number {
    return this.total;
  }

  get bytesCut(): number {
    return this.bound.bytesCut;
  }

  /** Why the stored log is incomplete (null: it is complete). Final after close(). */
  get failure(): string | null {
    if (!this.error) return null;
    return this.error.code ? `${this.error.code}: ${this.error.message}` : this.error.message;
  }

  async close(): Promise<void> {
    const rest = this.bound.finish();
    const file = this.file;
    if (!file || this.error) {
      file?.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      file.once('error', () => resolve());
      file.end(rest, (err?: Error | null) => {
        if (err) this.error ??= err;
        resolve();
      });
    });
  }
}
