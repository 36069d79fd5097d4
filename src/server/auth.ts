/**
 * Who is calling: every endpoint but health needs a bearer token. Tokens are random, shown once,
 * and stored as their SHA-256 only; a presented token is hashed and compared in constant time.
 * Failed attempts are limited per client address, so tokens cannot be guessed at speed.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type Caller =
  { kind: 'admin'; id: string } | { kind: 'user'; id: string } | { kind: 'pool'; poolId: string };

/** A new random token; its prefix says what it is for (admin, user: API tokens; pool: workers). */
export function newToken(prefix: 'admin' | 'user' | 'pool'): string {
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

/**
 * Browser sessions (the web page). Signing in with a token gives a random session value in a
 * cookie (HttpOnly, so no script reads it; SameSite=Strict, so no other site's page sends it;
 * Secure over TLS); the store keeps only its SHA-256. A state-changing request made with the
 * cookie must also carry the session's CSRF token in a header: a value derived from the session
 * (so the server stores nothing more) that only a page of this origin can have read.
 */
export const SESSION_COOKIE = 'berth_session';
export const CSRF_HEADER = 'x-berth-csrf';
export const SESSION_HOURS = 12;

export function newSessionValue(): string {
  return randomBytes(32).toString('base64url');
}

/** The CSRF token of a session: one-way from the cookie's value, so it never reveals it. */
export function csrfTokenOf(sessionValue: string): string {
  return createHash('sha256').update(`berth-csrf:${sessionValue}`).digest('base64url');
}

/** Whether the presented CSRF header belongs to the session (constant time). */
export function csrfMatches(sessionValue: string, presented: string | undefined): boolean {
  if (!presented) return false;
  const expected = Buffer.from(csrfTokenOf(sessionValue));
  const given = Buffer.from(presented);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** The session cookie's value in a Cookie header; null when there is none. */
export function sessionCookie(header: string | undefined): string | null {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) {
      const value = part.slice(eq + 1).trim();
      return /^[A-Za-z0-9_-]{43}$/.test(value) ? value : null;
    }
  }
  return null;
}

/** Set-Cookie for a new session, or (value null) one that makes the browser forget it. */
export function sessionSetCookie(value: string | null, secure: boolean): string {
  const attributes = ['Path=/', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])];
  return value === null
    ? [`${SESSION_COOKIE}=`, 'Max-Age=0', ...attributes].join('; ')
    : [`${SESSION_COOKIE}=${value}`, `Max-Age=${SESSION_HOURS * 3600}`, ...attributes].join('; ');
}

/** Methods that change nothing: the only ones a cookie alone may make. */
export function isSafeMethod(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}
