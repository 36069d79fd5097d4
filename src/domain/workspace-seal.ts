/**
 * What opens a sealed workspace (launcher/sealed-archive.ts): the AES-256-GCM key, nonce and
 * authentication tag. `berth run` keeps it in memory only; a worker hands it to its server, which
 * keeps it sealed with its own secrets key, apart from the blob, and gives it only to the worker
 * of the run's pool that leases the apply.
 */

export interface Seal {
  key: Buffer;
  iv: Buffer;
  tag: Buffer;
}

/** The seal as text (base64 fields), to travel and be stored sealed again. */
export function sealToText(seal: Seal): string {
  return JSON.stringify({
    key: seal.key.toString('base64'),
    iv: seal.iv.toString('base64'),
    tag: seal.tag.toString('base64'),
  });
}

/** The seal back from sealToText's text; null when it is not one. */
export function sealFromText(text: string): Seal | null {
  try {
    const parsed = JSON.parse(text) as Record<string, unknown>;
    const field = (name: string, bytes: number): Buffer | null => {
      const value = parsed[name];
      if (typeof value !== 'string') return null;
      const buf = Buffer.from(value, 'base64');
      return buf.length === bytes ? buf : null;
    };
    const key = field('key', 32);
    const iv = field('iv', 12);
    const tag = field('tag', 16);
    return key && iv && tag ? { key, iv, tag } : null;
  } catch {
    return null;
  }
}
