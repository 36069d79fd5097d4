/**
 * ULIDs (https://github.com/ulid/spec): 48 bits of milliseconds and 80 random bits in Crockford's
 * base32, so ids sort by creation time as text. Time and randomness are passed in; within one
 * millisecond ids of one generator keep increasing (the spec's monotonic mode).
 */

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

function encodeTime(ms: number): string {
  let out = '';
  let value = ms;
  for (let i = 0; i < 10; i += 1) {
    out = (ALPHABET[value % 32] as string) + out;
    value = Math.floor(value / 32);
  }
  return out;
}

function encodeRandom(bytes: Uint8Array): string {
  // 80 bits → 16 characters of 5 bits, read from a big-endian bit stream.
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes.subarray(0, 10)) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  return out;
}

/** Adds one to a base32 string (the random part), for ids made in the same millisecond. */
function increment(text: string): string | null {
  const chars = text.split('');
  for (let i = chars.length - 1; i >= 0; i -= 1) {
    const index = ALPHABET.indexOf(chars[i] as string);
    if (index < 31) {
      chars[i] = ALPHABET[index + 1] as string;
      return chars.join('');
    }
    chars[i] = '0';
  }
  return null;
}

export function ulidGenerator(
  now: () => number,
  random: (size: number) => Uint8Array,
): () => string {
  let lastTime = -1;
  let lastRandom = '';
  return () => {
    const time = now();
    if (time <= lastTime) {
      const next = increment(lastRandom);
      if (next !== null) {
        lastRandom = next;
        return encodeTime(lastTime) + next;
      }
    }
    lastTime = Math.max(time, lastTime + (time <= lastTime ? 1 : 0));
    lastRandom = encodeRandom(random(10));
    return encodeTime(lastTime) + lastRandom;
  };
}

export function isUlid(text: string): boolean {
  return /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/.test(text);
}
