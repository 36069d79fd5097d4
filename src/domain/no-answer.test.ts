/** What the CLI and the worker say of a request to the server that got no answer. */
import { describe, expect, it } from 'vitest';
import { noAnswer } from './no-answer.js';

/** What fetch throws: a TypeError whose cause is the socket's error. */
function fetchFailure(code: string, message: string): Error {
  return new TypeError('fetch failed', { cause: Object.assign(new Error(message), { code }) });
}

describe('noAnswer', () => {
  it("gives the network's code and first line", () => {
    expect(
      noAnswer(
        'http://h:1',
        fetchFailure('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.1:1'),
        'client',
      ),
    ).toEqual({
      kind: 'unreachable',
      message:
        'cannot reach the berth server at http://h:1 (ECONNREFUSED: connect ECONNREFUSED 10.0.0.1:1)',
    });
  });

  it('says a TLS record error is https:// on a plain HTTP port', () => {
    const answer = noAnswer(
      'https://h:8080',
      fetchFailure(
        'ERR_SSL_WRONG_VERSION_NUMBER',
        'wrong version number\n  at ssl/record/ssl3_record.c:354',
      ),
      'worker',
    );
    expect(answer.message).toBe(
      'cannot reach the berth server at https://h:8080 (ERR_SSL_WRONG_VERSION_NUMBER: no TLS on that port; if the server listens on plain HTTP, use http://)',
    );
  });

  it('tells an untrusted certificate apart, for whom', () => {
    expect(
      noAnswer(
        'https://h',
        fetchFailure('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain'),
        'worker',
      ),
    ).toEqual({
      kind: 'not-trusted',
      message:
        'the berth server at https://h presented a certificate this worker does not trust (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain)',
    });
  });

  it('falls back to the error itself when there is no cause', () => {
    expect(noAnswer('http://h', new TypeError('Failed to fetch'), 'client').message).toBe(
      'cannot reach the berth server at http://h (Failed to fetch)',
    );
  });

  it('says a request that timed out had no answer in time', () => {
    const timeout = Object.assign(new Error('The operation was aborted due to timeout'), {
      name: 'TimeoutError',
    });
    expect(noAnswer('http://h', timeout, 'client').message).toBe(
      'cannot reach the berth server at http://h (TimeoutError: no answer within the time limit; the server may be overloaded or hung)',
    );
  });
});
