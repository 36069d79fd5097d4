/**
 * Ships a run's masked output to the server in ordered batches. Text is held for a moment (the
 * hold-back window, HOLD_MS) before it is sent, masked once more as it leaves with every value
 * known then, and sent with its sequence numbers; again after a network error until the server
 * has it. Up to IN_FLIGHT batches of a run are on the way at once (heavy output does not wait a
 * round trip per batch); they are numbered in order, and the server stores a batch only after
 * the one before it (a batch that arrives early waits there for the gap to fill), so order
 * holds; the server keeps each sequence number once, so a batch sent twice is stored once. A
 * run handed on continues its log where the server says (`firstSeq`).
 *
 * Values masked mid-run (`addMask`, from a job's `::add-mask`): text still held is masked before
 * it leaves, which covers a value printed shortly before its directive; for text already sent the
 * server is asked to mask the value in the stored log (`remask`), after everything sent before.
 *
 * Bounded like `berth run`'s stored log (`limitBytes`, domain/log-bound.ts): the head is sent as
 * it comes, the tail is kept in a ring and sent with the cut marker when the run ends; the server
 * refuses a log past its own limit, which it tells the worker with the run.
 *
 * A refusal (4xx: the run is no longer this worker's, or the log is full) stops the shipping:
 * sending more could only be refused too. Output that piles up while the server cannot be reached
 * is bounded: past the limit it is dropped, and one line in the log says how much.
 */
import { StringDecoder } from 'node:string_decoder';
import { HeadTailLog } from '../domain/log-bound.js';
import { MaskValues, maskAll } from '../domain/log-masker.js';

/**
 * The most bytes of text one batch carries, counted as sent (JSON-encoded UTF-8): under the
 * server's 1 MiB body limit with room for the rest of the request, and large enough that heavy
 * output goes in few round trips (a batch a window's worth of output, however much came).
 */
export const BATCH_BYTES = 768 * 1024;
/** The server takes at most this many chunks in one batch. */
export const BATCH_CHUNKS = 1000;
/** One stored chunk holds at most this many characters of text (the server takes 256 KiB). */
export const CHUNK_CHARS = 32 * 1024;
/**
 * How long text waits before it is sent, so a value masked a moment after it was printed is caught
 * (two lines of a script, or the other stream, come within milliseconds). It is also every live
 * line's delay to a follower, so it stays short: what was sent before a mask arrives is re-masked
 * on the server instead.
 */
export const HOLD_MS = 200;
export const PENDING_LIMIT_BYTES = 64 * 1024 * 1024;
/**
 * Batches of one run on the way at once. More than one hides the round trip; a few are enough,
 * since each carries up to BATCH_BYTES and the server stores them one after another anyway.
 */
export const IN_FLIGHT = 3;

/** An answer of the server that sending again cannot change. */
export class LogRefused extends Error {}

export interface ShipperOptions {
  firstSeq?: number;
  retryDelayMs?: number;
  holdMs?: number;
  /** Bound the log to this many bytes, head and tail (none: everything is sent). */
  limitBytes?: number;
  /** Values to mask in what was already sent (the server's re-mask). */
  remask?: (values: string[]) => Promise<void>;
}

interface Held {
  text: string;
  at: number;
}

export class LogShipper {
  private pending: Held[] = [];
  /** Bytes waiting in batches not yet delivered (bounded by PENDING_LIMIT_BYTES). */
  private unsentBytes = 0;
  private droppedBytes = 0;
  private nextSeq: number;
  private sent = false;
  /** Starts the calls in order (a batch waits for a free place, a re-mask for all before it). */
  private starting: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private refused: Error | null = null;
  /** Set by stopRetrying: a call that fails on the network once `signal` is aborted is dropped. */
  private givenUp: { why: string; signal: AbortSignal } | null = null;
  /** Ends the waits before the next try at once (stopRetrying). */
  private readonly retryWaits = new Set<() => void>();
  private readonly masks = new MaskValues();
  private readonly bound: HeadTailLog | null;
  private readonly headText = new StringDecoder('utf8');
  private readonly retryDelayMs: number;
  private readonly holdMs: number;

  constructor(
    private readonly send: (firstSeq: number, texts: string[]) => Promise<number>,
    private readonly options: ShipperOptions = {},
  ) {
    this.nextSeq = options.firstSeq ?? 1;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
    this.holdMs = options.holdMs ?? HOLD_MS;
    this.bound = options.limitBytes ? new HeadTailLog(options.limitBytes) : null;
  }

  /** Why shipping stopped (the server refused a batch, or it was given up), or null. */
  get failure(): Error | null {
    return this.refused;
  }

  /**
   * From now on, what the server cannot be reached for is tried again a second apart at most (a
   * cut connection or a server's restart is not a server gone) until `giveUp` is aborted, then
   * given up (`why` says why, in `failure`): a worker told to stop at once does not wait for ever
   * for a server that is gone. What the server answers is sent as usual.
   */
  stopRetrying(why: string, giveUp: AbortSignal): void {
    this.givenUp = { why, signal: giveUp };
    for (const wake of this.retryWaits) wake();
  }

  add(text: string): void {
    if (this.closed || this.refused || text === '') return;
    if (!this.bound) {
      this.hold(text);
      return;
    }
    const head = this.headText.write(this.bound.append(Buffer.from(text, 'utf8')));
    if (head !== '') this.hold(head);
  }

  /**
   * A value to mask from now on, also in what is held and (through the server) in what was sent.
   * Held text is sent first, so the server's re-mask also sees a value split across the two.
   */
  addMask(value: string): void {
    if (!this.masks.add(value) || this.refused) return;
    const sentBefore = this.sent;
    this.flush(true);
    const remask = this.options.remask;
    if (!remask || !sentBefore) return;
    // After every batch sent before it: the server masks what it has stored.
    this.starting = this.starting.then(async () => {
      await Promise.all(this.inFlight);
      await this.deliver(() => remask([value]));
    });
  }

  /** Sends what is held (and the bound's tail) and waits until everything sent is stored. */
  async close(): Promise<void> {
    if (!this.closed && this.bound) {
      const rest = this.headText.end() + this.bound.finish().toString('utf8');
      if (rest !== '') this.hold(rest);
    }
    if (this.droppedBytes > 0 && !this.refused) this.noteDropped();
    this.closed = true;
    this.flush(true);
    await this.starting;
    await Promise.all(this.inFlight);
  }

  private hold(text: string): void {
    if (this.unsentBytes + text.length > PENDING_LIMIT_BYTES) {
      this.droppedBytes += text.length;
      return;
    }
    if (this.droppedBytes > 0) this.noteDropped();
    this.keep(text);
  }

  private keep(text: string): void {
    this.pending.push({ text, at: Date.now() });
    this.unsentBytes += text.length;
    this.timer ??= setTimeout(() => this.flush(false), this.holdMs);
  }

  private noteDropped(): void {
    const line = `\n[berth: ${this.droppedBytes} bytes of output dropped here: the server could not be reached and the worker keeps at most ${PENDING_LIMIT_BYTES} bytes waiting]\n`;
    this.droppedBytes = 0;
    this.keep(line);
  }

  /** Sends what was held for the window (`all`: everything held), masked, in batches. */
  private flush(all: boolean): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const due = Date.now() - this.holdMs;
    const count = all ? this.pending.length : this.pending.findIndex((h) => h.at > due);
    const taken = this.pending.splice(0, count === -1 ? this.pending.length : count);
    if (this.pending.length > 0) {
      const wait = Math.max(0, (this.pending[0] as Held).at + this.holdMs - Date.now());
      this.timer = setTimeout(() => this.flush(false), wait);
    }
    if (taken.length === 0) return;
    const bytes = taken.reduce((sum, h) => sum + h.text.length, 0);
    const joined = taken.map((h) => h.text).join('');
    // Masked as a whole: a value split across two pieces of output is one match here.
    const chunks = splitChunks(this.masks.size > 0 ? maskAll(joined, this.masks) : joined);
    for (const texts of batches(chunks)) {
      const first = this.nextSeq;
      this.nextSeq += texts.length;
      this.sent = true;
      this.start(() => this.send(first, texts));
    }
    // Once this window's batches have started, its bytes count as unsent until they arrive.
    this.starting = this.starting.then(() => {
      void Promise.all(this.inFlight).then(() => {
        this.unsentBytes -= bytes;
      });
    });
  }

  /** Starts `call` after the calls before it have started, when fewer than IN_FLIGHT are out. */
  private start(call: () => Promise<unknown>): void {
    this.starting = this.starting.then(async () => {
      while (this.inFlight.size >= IN_FLIGHT) await Promise.race(this.inFlight);
      const delivery: Promise<void> = this.deliver(call).finally(() => {
        this.inFlight.delete(delivery);
      });
      this.inFlight.add(delivery);
    });
  }

  /** One call to the server, again after a network error, never after a refusal. */
  private async deliver(call: () => Promise<unknown>): Promise<void> {
    for (let attempt = 0; !this.refused; attempt += 1) {
      try {
        await call();
        return;
      } catch (err) {
        if (err instanceof LogRefused) {
          this.refused = err;
          return;
        }
        const givenUp = this.givenUp;
        if (givenUp?.signal.aborted) {
          this.refused ??= new Error(`${givenUp.why} (${(err as Error).message})`);
          return;
        }
        // The server may have stored it before the answer was lost: sending again is safe.
        const delay = Math.min(this.retryDelayMs * 2 ** attempt, givenUp ? 1000 : 15_000);
        await new Promise<void>((resolve) => {
          const wake = (): void => {
            clearTimeout(timer);
            this.retryWaits.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, delay);
          this.retryWaits.add(wake);
        });
      }
    }
  }
}

/**
 * Chunks in consecutive batches of at most BATCH_CHUNKS chunks and BATCH_BYTES bytes as sent
 * (a chunk's JSON string: escapes and multi-byte characters count), so that no batch exceeds
 * the server's body limit, which it would refuse, however much output came in one window.
 */
export function batches(chunks: readonly string[]): string[][] {
  const out: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const chunk of chunks) {
    const size = Buffer.byteLength(JSON.stringify(chunk), 'utf8') + 1;
    if (batch.length > 0 && (batch.length === BATCH_CHUNKS || bytes + size > BATCH_BYTES)) {
      out.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(chunk);
    bytes += size;
  }
  if (batch.length > 0) out.push(batch);
  return out;
}

/** Text cut into chunks of at most CHUNK_CHARS, never between the halves of a surrogate pair. */
function splitChunks(text: string): string[] {
  const chunks: string[] = [];
  for (let at = 0; at < text.length;) {
    let end = Math.min(at + CHUNK_CHARS, text.length);
    const code = text.charCodeAt(end - 1);
    if (end < text.length && code >= 0xd800 && code <= 0xdbff) end -= 1;
    chunks.push(text.slice(at, end));
    at = end;
  }
  return chunks;
}
