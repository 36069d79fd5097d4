/**
 * A request to the berth server that got no answer, as the CLI and the worker both say it: a
 * certificate the caller does not trust (its own kind: the fix is a CA, not the URL), or the
 * network's reason in one line.
 */

/** Node's codes for a server certificate that does not verify. */
const TLS_TRUST_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

export interface NoAnswer {
  kind: 'not-trusted' | 'unreachable';
  message: string;
}

/**
 * What `fetch` threw for `baseUrl`, said for `who` ("client", "worker"). The network's reason is
 * its code and first line (OpenSSL appends its source file); a TLS record error means the port
 * speaks plain HTTP.
 */
export function noAnswer(baseUrl: string, err: unknown, who: string): NoAnswer {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code;
  if (code && TLS_TRUST_ERRORS.has(code)) {
    return {
      kind: 'not-trusted',
      message: `the berth server at ${baseUrl} presented a certificate this ${who} does not trust (${code}: ${cause?.message ?? ''})`,
    };
  }
  const said = (cause?.message ?? (err as Error).message).split('\n')[0]?.trim() ?? '';
  const why =
    (err as Error).name === 'TimeoutError'
      ? 'TimeoutError: no answer within the time limit; the server may be overloaded or hung'
      : code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'EPROTO'
        ? `${code}: no TLS on that port; if the server listens on plain HTTP, use http://`
        : code
          ? `${code}${said ? `: ${said}` : ''}`
          : said || (err as Error).name;
  return { kind: 'unreachable', message: `cannot reach the berth server at ${baseUrl} (${why})` };
}
