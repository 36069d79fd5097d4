/**
 * Ships a run's masked output to the server in ordered batches: text is gathered for a moment
 * (or until a batch is big), sent with its sequence numbers, and sent again after a network error
 * until the server has it. One batch is in flight at a time, so order holds; the server keeps
 * each sequence number once, so a batch sent twice is stored once.
 */
const BATCH_BYTES = 64 * 1024;
const BATCH_DELAY_MS = 200;

export class LogShipper {
  private pending: string[] = [];
  private pendingBytes = 0;
  private nextSeq = 1;
  private sending: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly send: (firstSeq: number, texts: string[]) => Promise<number>,
    private readonly retryDelayMs = 1000,
  ) {}

  add(text: string): void {
    if (this.closed || text === '') return;
    this.pending.push(text);
    this.pendingBytes += text.length;
    if (this.pendingBytes >= BATCH_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), BATCH_DELAY_MS);
  }

  /** Sends what is pending and waits until everything sent so far is stored. */
  async close(): Promise<void> {
    this.closed = true;
    this.flush();
    await this.sending;
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const texts = this.pending;
    const first = this.nextSeq;
    this.nextSeq += texts.length;
    this.pending = [];
    this.pendingBytes = 0;
    this.sending = this.sending.then(() => this.deliver(first, texts));
  }

  private async deliver(first: number, texts: string[]): Promise<void> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        await this.send(first, texts);
        return;
      } catch {
        // The server may have stored it before the answer was lost: sending again is safe.
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(this.retryDelayMs * 2 ** attempt, 15_000)),
        );
        if (attempt > 40) return;
      }
    }
  }
}
