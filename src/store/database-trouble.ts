/**
 * Which failures mean the PostgreSQL database cannot be used now (not reachable, credentials
 * refused, no such database, shutting down, no connection free), as opposed to a query berth got
 * wrong: the server says the first kind plainly (BERTH_DATABASE_UNAVAILABLE at start, 503 while
 * serving) instead of as a bug.
 */
/** PostgreSQL's codes for a database that cannot be used now, by why (SQLSTATE classes 08, 57P, 28). */
const POSTGRES_UNAVAILABLE: Record<string, DatabaseTrouble['kind']> = {
  '28P01': 'auth',
  '28000': 'auth',
  '3D000': 'missing',
  '53300': 'busy',
  '57P01': 'down',
  '57P02': 'down',
  '57P03': 'down',
  '08000': 'unreachable',
  '08001': 'unreachable',
  '08003': 'unreachable',
  '08004': 'unreachable',
  '08006': 'unreachable',
};
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOENT',
  'EPIPE',
]);
/** The system calls whose network errors mean the database's connection (a file's ENOENT does not). */
const NETWORK_CALLS = new Set(['connect', 'getaddrinfo', 'read', 'write']);

export interface DatabaseTrouble {
  /** unreachable: no answer; auth: credentials refused; missing: no such database; down: shutting down or starting; busy: no connection free. */
  kind: 'unreachable' | 'auth' | 'missing' | 'down' | 'busy';
  /** What the driver said, short: its code and message. */
  cause: string;
}

/**
 * Whether `err` (or what it wraps) means the PostgreSQL database cannot be used now, as opposed to
 * a query berth got wrong: its kind and cause, else null.
 */
export function databaseTrouble(err: unknown): DatabaseTrouble | null {
  for (
    let e = err as
        { code?: unknown; message?: unknown; syscall?: unknown; cause?: unknown } | undefined,
      depth = 0;
    e && depth < 4;
    e = e.cause as typeof e, depth += 1
  ) {
    const code = typeof e.code === 'string' ? e.code : '';
    const message = typeof e.message === 'string' ? e.message : '';
    // A host name with several addresses fails as one AggregateError (no system call of its own).
    const call = typeof e.syscall === 'string' ? e.syscall : '';
    const network =
      NETWORK_CODES.has(code) &&
      (NETWORK_CALLS.has(call) || (e as Error).name === 'AggregateError');
    const kind =
      POSTGRES_UNAVAILABLE[code] ??
      (network || /^Connection terminated/i.test(message) ? 'unreachable' : null);
    if (kind) return { kind, cause: databaseCause(e) };
  }
  return null;
}

export function databaseCause(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(err);
  return typeof e.code === 'string' && !message.includes(e.code)
    ? `${e.code}: ${message}`
    : message;
}
