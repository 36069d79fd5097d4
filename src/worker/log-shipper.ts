/**
 * Ships a run's masked output to the server in ordered batches: text is gathered for a moment
 * (or until a batch is big or long), sent with its sequence numbers, and sent again after a
 * network error until the server has it. One batch is in flight at a time, so order holds; the
 * server keeps each sequence number once, so a batch sent twice is stored once. A run handed on
 * continues its log where the server says (`firstSeq`).
 *
 * A refusal (4xx: the run is no longer this worker's, or the batch is wrong) stops the shipping:
 * sending more could only be refused too. Output that piles up while the server cannot be reached
 * is bounded: past the limit it is dropped, and one line in the log says how much.
 */
export const BATCH_BYTES = 64 * 1024;
/** The server takes at most this many chunks in one batch. */
export const BATCH_CHUNKS = 1000;
const BATCH_DELAY_MS = 200;
export const PENDING_LIMIT_BYTES = 64 * 1024 * 1024;

/** An answer of the server that sending again cannot change. */
export class LogRefused extends Error {}

export class LogShipper {
  private pending: string[] = [];
  private pendingBytes = 0;
  /** Bytes waiting in batches not yet delivered (bounded by PENDING_LIMIT_BYTES). */
  private unsentBytes = 0;
  private droppedBytes = 0;
  private nextSeq: number;
  private sending: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private refused: Error | null = null;

  constructor(
    private readonly send: (firstSeq: number, texts: string[]) => Promise<number>,
    options: { firstSeq?: number; retryDelayMs?: number } = {},
  ) {
    this.nextSeq = options.firstSeq ?? 1;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
  }

  private readonly retryDelayMs: number;

  /** Why shipping stopped (the server refused a batch), or null. */
  get failure(): Error | null {
    return this.refused;
  }

  add(text: string): void {
    if (this.closed || this.refused || text === '') return;
    if (this.unsentBytes + text.length > PENDING_LIMIT_BYTES) {
      this.droppedBytes += text.length;
      return;
    }
    if (this.droppedBytes > 0) this.noteDropped();
    this.pending.push(text);
    this.pendingBytes += text.length;
    this.unsentBytes += text.length;
    if (this.pendingBytes >= BATCH_BYTES || this.pending.length >= BATCH_CHUNKS) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), BATCH_DELAY_MS);
  }

  /** Sends what is pending and waits until everything sent so far is stored (or refused). */
  async close(): Promise<void> {
    if (this.droppedBytes > 0 && !this.refused) this.noteDropped();
    this.closed = true;
    this.flush();
    await this.sending;
  }

  private noteDropped(): void {
    const line = `\n[berth: ${this.droppedBytes} bytes of output dropped here: the server could not be reached and the worker keeps at most ${PENDING_LIMIT_BYTES} bytes waiting]\n`;
    this.droppedBytes = 0;
    this.pending.push(line);
    this.pendingBytes += line.length;
    this.unsentBytes += line.length;
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.pending.length > 0) {
      const texts = this.pending.splice(0, BATCH_CHUNKS);
      const bytes = texts.reduce((sum, t) => sum + t.length, 0);
      const first = this.nextSeq;
      this.nextSeq += texts.length;
      this.sending = this.sending.then(() => this.deliver(first, texts, bytes));
    }
    this.pendingBytes = 0;
  }

  private async deliver(first: number, texts: string[], bytes: number): Promise<void> {
    try {
      for (let attempt = 0; !this.refused; attempt += 1) {
        try {
          await this.send(first, texts);
          return;
        } catch (err) {
          if (err instanceof LogRefused) {
            this.refused = err;
            return;
          }
          // The server may have stored it before the answer was lost: sending again is safe.
          await new Promise((resolve) =>
            setTimeout(resolve, Math.min(this.retryDelayMs * 2 ** attempt, 15_000)),
          );
        }
      }
    } finally {
      this.unsentBytes -= bytes;
    }
  }
}
