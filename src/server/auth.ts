/**
 * Who is calling: every endpoint but health needs a bearer token. Tokens are random, shown once,
 * and stored as their SHA-256 only; a presented token is hashed and compared in constant time.
 * Failed attempts are limited per client address, so tokens cannot be guessed at speed.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type Caller =
  { kind: 'admin'; id: string } | { kind: 'user'; id: string } | { kind: 'pool'; poolId: string };

export function newToken(prefix: 'admin' | 'api' | 'pool'): string {
  return `berth_${prefix}_${randomBytes(24).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Constant-time comparison of two hex hashes of the same length. */
export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}

/** The token of an `Authorization: Bearer …` header; null when there is none. */
export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer\s+([A-Za-z0-9_\-.~+/]+=*)\s*$/i.exec(header ?? '');
  return match ? (match[1] as string) : null;
}

/**
 * Failed authentications per client address in a sliding window: past `limit` the address gets
 * 429 until the window has passed. Time is injected.
 */
export class FailedAttempts {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  private recent(address: string): number[] {
    const since = this.now() - this.windowMs;
    const kept = (this.failures.get(address) ?? []).filter((t) => t > since);
    if (kept.length === 0) this.failures.delete(address);
    else this.failures.set(address, kept);
    return kept;
  }

  blocked(address: string): boolean {
    return this.recent(address).length >= this.limit;
  }

  record(address: string): void {
    const kept = this.recent(address);
    kept.push(this.now());
    this.failures.set(address, kept);
    // Bounded memory: forget the oldest addresses first.
    if (this.failures.size > 10_000) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }

  /** Seconds until the address may try again. */
  retryAfter(address: string): number {
    const first = this.recent(address)[0] ?? this.now();
    return Math.max(1, Math.ceil((first + this.windowMs - this.now()) / 1000));
  }
}
