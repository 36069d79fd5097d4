/**
 * Streaming secret masking. A job writes its output in arbitrary chunks, so a secret can arrive
 * split across two writes ("hunt" then "er2"). The masker holds back only the shortest tail that
 * could still be the start of a secret, and releases it as soon as the next chunk (or the end of
 * the stream) decides it. Nothing else is delayed.
 */

export const MASK = '*****';

export class SecretMasker {
  private secrets: string[] = [];
  private pending = '';

  constructor(secrets: Iterable<string> = []) {
    for (const secret of secrets) this.addSecret(secret);
  }

  /** Adds a value to mask from now on. Empty values are ignored (they would mask everything). */
  addSecret(secret: string): void {
    if (secret.length === 0 || this.secrets.includes(secret)) return;
    this.secrets.push(secret);
    // Longest first, so a secret that contains another is masked whole.
    this.secrets.sort((a, b) => b.length - a.length);
  }

  /** Feeds a chunk; returns the text that is now safe to show. */
  write(chunk: string): string {
    const text = this.pending + chunk;
    if (this.secrets.length === 0) {
      this.pending = '';
      return text;
    }
    const { masked, safeEnd } = this.maskUpTo(text);
    this.pending = text.slice(safeEnd);
    return masked;
  }

  /** Ends the stream: whatever was held back cannot become a secret any more. */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  /** True while some text is held back waiting for the next chunk. */
  get holding(): boolean {
    return this.pending.length > 0;
  }

  private maskUpTo(text: string): { masked: string; safeEnd: number } {
    let out = '';
    let index = 0;
    for (;;) {
      // The earliest match wins; at the same position the longest secret (sorted first) wins.
      let at = -1;
      let found = '';
      for (const secret of this.secrets) {
        const i = text.indexOf(secret, index);
        if (i >= 0 && (at < 0 || i < at)) {
          at = i;
          found = secret;
        }
      }
      if (at < 0) break;
      out += text.slice(index, at) + MASK;
      index = at + found.length;
    }
    // No whole secret remains at or after `index`; hold back the earliest tail that could still
    // grow into one. Only the last (longest secret - 1) characters can be such a tail.
    const longest = this.secrets[0]?.length ?? 0;
    let safeEnd = text.length;
    for (let p = Math.max(index, text.length - longest + 1); p < text.length; p += 1) {
      if (this.couldStartSecret(text, p)) {
        safeEnd = p;
        break;
      }
    }
    return { masked: out + text.slice(index, safeEnd), safeEnd };
  }

  /** Whether text[index..] is a proper prefix of some secret (so more input may complete it). */
  private couldStartSecret(text: string, index: number): boolean {
    const tail = text.slice(index);
    return this.secrets.some((s) => s.length > tail.length && s.startsWith(tail));
  }
}

/** Masks every secret in a complete string (for messages, summaries, stored values). */
export function maskAll(text: string, secrets: Iterable<string>): string {
  const masker = new SecretMasker(secrets);
  return masker.write(text) + masker.flush();
}
