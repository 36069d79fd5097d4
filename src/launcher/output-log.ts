/**
 * The stored copy of a run's output: masked text, bounded to head + tail (see domain/log-bound.ts).
 * The head is appended to the file as it arrives; the tail is kept in memory (at most half the
 * limit) and written when the run ends. A file that cannot be written (a full disk, a state
 * directory that went away) never stops the job: the failure is kept and reported with the run,
 * and the live output is complete either way.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
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

  /** Masked output as text (stored as UTF-8). */
  append(text: string): void {
    this.keep(this.bound.append(Buffer.from(text, 'utf8')), Buffer.byteLength(text, 'utf8'));
  }

  /** Masked output as a byte string (see domain/byte-string.ts), stored as the bytes it holds. */
  appendBytes(bytes: string): void {
    this.keep(this.bound.appendBytes(bytes), bytes.length);
  }

  private keep(head: Buffer, length: number): void {
    this.total += length;
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
    const { code, message } = this.error;
    // Node's errors of the file system already start with their code.
    return code && !message.startsWith(`${code}:`) ? `${code}: ${message}` : message;
  }

  /**
   * Writes the tail and closes the file. `mask` is applied to the whole stored log once more: a
   * value masked by `::add-mask` after it was printed (before the directive, or on the other
   * stream a moment earlier) is then masked in the stored log too.
   */
  async close(mask?: (text: string) => string): Promise<void> {
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
    if (!mask || this.error) return;
    try {
      const text = await readFile(this.path, 'utf8');
      const masked = mask(text);
      if (masked === text) return;
      const temp = `${this.path}.${process.pid}.tmp`;
      await writeFile(temp, masked, { mode: 0o600 });
      await rename(temp, this.path);
    } catch (err) {
      this.error ??= err as NodeJS.ErrnoException;
    }
  }
}
