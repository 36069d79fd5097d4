/**
 * Group commit for one kind of call: calls that arrive while a batch is being served wait for
 * the next batch and are served together, by one call of `serve` (one statement, one round trip,
 * one commit), instead of each taking a connection and racing the others for the same rows.
 * A call that arrives when nothing is in flight is served at once, alone: coalescing adds no
 * wait when there is no contention, and at most one batch's time when there is.
 *
 * Per key (a pool): at most one batch in flight, each of at most `maxBatch` calls, answered in
 * the order they arrived. A batch that fails rejects each of its calls with the same error;
 * the next batch still runs.
 */
export class Coalescer<Request, Answer> {
  private readonly pending = new Map<string, Waiting<Request, Answer>[]>();
  private readonly busy = new Set<string>();

  constructor(
    /** Serves a batch: one answer per request, in the same order. */
    private readonly serve: (key: string, requests: Request[]) => Promise<Answer[]>,
    private readonly maxBatch: number,
  ) {}

  call(key: string, request: Request): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const queue = this.pending.get(key) ?? [];
      this.pending.set(key, queue);
      queue.push({ request, resolve, reject });
      if (!this.busy.has(key)) void this.drain(key);
    });
  }

  /** Serves the key's waiting calls, a batch at a time, until none is left. */
  private async drain(key: string): Promise<void> {
    this.busy.add(key);
    try {
      for (;;) {
        const queue = this.pending.get(key);
        if (!queue || queue.length === 0) {
          this.pending.delete(key);
          return;
        }
        const batch = queue.splice(0, this.maxBatch);
        try {
          const answers = await this.serve(
            key,
            batch.map((w) => w.request),
          );
          batch.forEach((w, i) => w.resolve(answers[i] as Answer));
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.busy.delete(key);
    }
  }
}

interface Waiting<Request, Answer> {
  request: Request;
  resolve: (answer: Answer) => void;
  reject: (err: unknown) => void;
}
