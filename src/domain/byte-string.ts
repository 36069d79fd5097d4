/**
 * Byte strings: a job's output bytes held one per UTF-16 code unit (char codes 0 to 255, what
 * Node calls `latin1`). The output pipeline works on them instead of decoded text: taking bytes
 * in and out is a plain copy (no UTF-8 decoding and encoding back of every byte), a character
 * split across two engine reads needs no care (its bytes are joined again on the way out), and
 * bytes that are not valid UTF-8 pass as they came. Secret values are matched in their UTF-8
 * form (`toByteString`); UTF-8 being self-synchronising, a value's bytes occur where the value
 * occurs in the decoded text.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The UTF-8 bytes of `text` as a byte string. */
export function toByteString(text: string): string {
  const bytes = encoder.encode(text);
  let out = '';
  // Chunks keep String.fromCharCode's argument list short for long values.
  for (let at = 0; at < bytes.length; at += 8192) {
    out += String.fromCharCode(...bytes.subarray(at, at + 8192));
  }
  return out;
}

/** The text a byte string's UTF-8 holds (invalid sequences as U+FFFD). */
export function fromByteString(bytes: string): string {
  const array = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += 1) array[i] = bytes.charCodeAt(i);
  return decoder.decode(array);
}

/**
 * The length in UTF-16 code units of the text a byte string's UTF-8 holds, counted byte by byte
 * (the same whatever point the bytes were cut at): one per byte that starts a character, two
 * for a character outside the Basic Multilingual Plane (a four-byte sequence).
 */
export function textLength(bytes: string): number {
  let length = 0;
  for (let i = 0; i < bytes.length; i += 1) {
    const byte = bytes.charCodeAt(i);
    if (byte < 0x80 || byte >= 0xc0) length += byte >= 0xf0 ? 2 : 1;
  }
  return length;
}
