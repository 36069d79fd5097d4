/**
 * Bounded log keeping: the first half of the budget is kept as the head (released as it arrives,
 * so it can be written out live), the second half as a rolling tail. What falls between is
 * counted and replaced with a visible marker. The bound concerns the stored log only: it never
 * changes what the job does or how its run ends.
 */

export function cutMarker(bytesCut: number): string {
  return `\n[berth: ${bytesCut} bytes of output cut here to keep the stored log within its limit; the job's own output was not changed]\n`;
}

export class HeadTailLog {
  private readonly headLimit: number;
  private readonly tailLimit: number;
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private cut = 0;

  constructor(limitBytes: number) {
    if (!Number.isInteger(limitBytes) || limitBytes < 2) {
      throw new RangeError(`log limit must be an integer of at least 2 bytes, got ${limitBytes}`);
    }
    this.headLimit = Math.ceil(limitBytes / 2);
    this.tailLimit = limitBytes - this.headLimit;
  }

  /** Adds output; returns the part that belongs to the head (empty once the head is full). */
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

  /** Bytes dropped between head and tail so far. */
  get bytesCut(): number {
    return this.cut;
  }

  /** What follows the head once the stream ends: the marker (if anything was cut) and the tail. */
  finish(): Buffer {
    const parts = this.cut > 0 ? [Buffer.from(cutMarker(this.cut)), ...this.tail] : this.tail;
    return Buffer.concat(parts);
  }

  private pushTail(chunk: Buffer): void {
    // Copy: the caller may reuse its buffer, and we keep this one past the call.
    this.tail.push(Buffer.from(chunk));
    this.tailBytes += chunk.length;
    while (this.tailBytes > this.tailLimit) {
      const first = this.tail[0] as Buffer;
      const excess = this.tailBytes - this.tailLimit;
      if (first.length <= excess) {
        this.tail.shift();
        this.tailBytes -= first.length;
        this.cut += first.length;
      } else {
        this.tail[0] = first.subarray(excess);
        this.tailBytes -= excess;
        this.cut += excess;
      }
    }
  }
}
