/**
 * Reads an HTTP response body with a size limit fitting what it should hold. A server (a release
 * mirror, a registry, a token service) may answer with an endless or huge body: berth stops
 * reading at the limit instead of holding it all, and says which limit it was.
 */

/** A body past its limit; the caller words the error for what it was reading. */
export class BodyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`the answer is larger than ${limit} bytes`);
    this.name = 'BodyTooLarge';
  }
}

/**
 * The whole body, at most `limit` bytes (counted after any content decoding, so a compressed
 * answer cannot inflate past it). A Content-Length above the limit stops before reading.
 */
export async function readBody(res: Response, limit: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    await res.body?.cancel().catch(() => {});
    throw new BodyTooLarge(limit);
  }
  const reader = res.body?.getReader();
  if (!reader) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = (await reader.read()) as
      { done: true; value?: undefined } | { done: false; value: Uint8Array };
    if (next.done) break;
    const value = next.value;
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLarge(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size);
}
