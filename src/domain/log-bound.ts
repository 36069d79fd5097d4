/**
 * Bounded log keeping: the first half of the budget is kept as the head (released as it arrives,
 * so it can be written out live), the second half as a rolling tail. What falls between is
 * counted and replaced with a visible marker. The bound concerns the stored log only: it never
 * changes what the job does or how its run ends.
 */

export function cutMarker(bytesCut: number): string {
  return `\n[berth: ${bytesCut} bytes of output cut here to keep the stored log within its limit; the job's own output was not changed]\n`;
}

/**
 * Where the server stopped storing a run's output: its worker sent more than the server's limit
 * (an honest worker bounds its log to head and tail below that limit, so this marks a worker that
 * did not).
 */
export function serverLimitMarker(limitBytes: number): string {
  return `\n[berth: the server stored no more of this run's output here: the log reached the server's limit of ${limitBytes} bytes (BERTH_LOG_LIMIT on the server); what the worker sent after this was refused]\n`;
}

/** Tail chunks held uncopied at most (see HeadTailLog's pending). */
const PENDING_CHUNKS = 256;

export class HeadTailLog {
  private readonly headLimit: number;
  private readonly tailLimit: number;
  private headBytes = 0;
  // The tail is one ring buffer, allocated when first needed: a long output makes no garbage.
  private ring: Buffer | null = null;
  private ringStart = 0;
  private ringLength = 0;
  /**
   * Tail chunks not yet copied into the ring, newest last. Most of a long output is overtaken
   * before the run ends: a chunk is copied only when it may still be among the last bytes, and
   * one wholly older than the last `tailLimit` bytes is dropped uncopied (this saved about a
   * tenth of `berth run`'s CPU on 200 MB of output, bench/throughput.ts).
   */
  private pending: (Buffer | string)[] = [];
  private pendingBytes = 0;
  private tailBytes = 0;

  constructor(limitBytes: number) {
    if (!Number.isInteger(limitBytes) || limitBytes < 2) {
      throw new RangeError(`log limit must be an integer of at least 2 bytes, got ${limitBytes}`);
    }
    this.headLimit = Math.ceil(limitBytes / 2);
    this.tailLimit = limitBytes - this.headLimit;
  }

  /**
   * Adds output; returns the part that belongs to the head (empty once the head is full). The
   * tail keeps a reference to `chunk` for a while: the caller must not change it afterwards.
   */
  append(chunk: Buffer): Buffer {
    let rest = chunk;
    let head: Buffer = Buffer.alloc(0);
    if (this.headBytes < this.headLimit) {
      const take = Math.min(this.headLimit - this.headBytes, rest.length);
      head = rest.subarray(0, take);
      this.headBytes += take;
      rest = rest.subarray(take);
    }
    if (rest.length > 0) this.pushTail(rest);
    return head;
  }

  /**
   * The same for a byte string (one character per byte, see byte-string.ts): the tail is copied
   * into the ring straight from the string, with no Buffer made for it.
   */
  appendBytes(bytes: string): Buffer {
    let rest = bytes;
    let head: Buffer = Buffer.alloc(0);
    if (this.headBytes < this.headLimit) {
      const take = Math.min(this.headLimit - this.headBytes, rest.length);
      head = Buffer.from(rest.slice(0, take), 'latin1');
      this.headBytes += take;
      rest = rest.slice(take);
    }
    if (rest.length > 0) this.pushTail(rest);
    return head;
  }

  /** Bytes dropped between head and tail so far. */
  get bytesCut(): number {
    return Math.max(0, this.tailBytes - this.tailLimit);
  }

  /** What follows the head once the stream ends: the marker (if anything was cut) and the tail. */
  finish(): Buffer {
    this.copyPending();
    const cut = this.bytesCut;
    const parts: Buffer[] = cut > 0 ? [Buffer.from(cutMarker(cut))] : [];
    if (this.ring) {
      const end = this.ringStart + this.ringLength;
      parts.push(this.ring.subarray(this.ringStart, Math.min(end, this.tailLimit)));
      if (end > this.tailLimit) parts.push(this.ring.subarray(0, end - this.tailLimit));
    }
    return Buffer.concat(parts);
  }

  private pushTail(chunk: Buffer | string): void {
    this.tailBytes += chunk.length;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // A chunk wholly older than the last tailLimit bytes can never be kept: dropped uncopied.
    for (
      let oldest = this.pending[0];
      oldest !== undefined && this.pendingBytes - oldest.length >= this.tailLimit;
      oldest = this.pending[0]
    ) {
      this.pending.shift();
      this.pendingBytes -= oldest.length;
    }
    // Many small chunks are copied now and then, so the list stays short.
    if (this.pending.length > PENDING_CHUNKS) this.copyPending();
  }

  private copyPending(): void {
    for (const chunk of this.pending) this.copyIntoRing(chunk);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private copyIntoRing(chunk: Buffer | string): void {
    const capacity = this.tailLimit;
    const ring = (this.ring ??= Buffer.alloc(capacity));
    /** Copies data[from, to) into the ring at `at`. */
    const put = (data: Buffer | string, at: number, from: number, to: number): void => {
      if (typeof data === 'string') ring.write(data.slice(from, to), at, 'latin1');
      else data.copy(ring, at, from, to);
    };
    const data = chunk;
    if (data.length >= capacity) {
      // Only the last `capacity` bytes can survive.
      put(data, 0, data.length - capacity, data.length);
      this.ringStart = 0;
      this.ringLength = capacity;
      return;
    }
    const overflow = Math.max(0, this.ringLength + data.length - capacity);
    const writeAt = (this.ringStart + this.ringLength) % capacity;
    const first = Math.min(data.length, capacity - writeAt);
    put(data, writeAt, 0, first);
    if (first < data.length) put(data, 0, first, data.length);
    this.ringStart = (this.ringStart + overflow) % capacity;
    this.ringLength = Math.min(capacity, this.ringLength + data.length);
  }
}
