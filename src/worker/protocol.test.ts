/** The worker protocol over HTTP: the server's address as every client reads it, and answers that are not berth's. */
import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { HttpWorkerProtocol, registrationRefused } from './protocol.js';

/** A fetch that records the URLs asked for and answers each with this status, type and body. */
function answering(status: number, contentType: string, body: string) {
  const urls: string[] = [];
  const fetchImpl = ((input: string) => {
    urls.push(input);
    return Promise.resolve(
      new Response(body, { status, headers: { 'content-type': contentType } }),
    );
  }) as typeof fetch;
  return { urls, fetchImpl };
}

async function failure(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (err) {
    return err;
  }
  throw new Error('the call succeeded');
}

describe('HttpWorkerProtocol', () => {
  it.each(['http://h:8080/', 'http://h:8080/api/v1/', 'http://h:8080/ui/runs/01JRUN'])(
    'asks the API of the server %s names',
    async (server) => {
      const { urls, fetchImpl } = answering(200, 'application/json', '{"workerId":"w1"}');
      await new HttpWorkerProtocol(server, 't', fetchImpl).lease('w1', 0);
      expect(urls).toEqual(['http://h:8080/api/v1/worker/lease']);
    },
  );

  it("says a web page answering a call is not berth's API (never a JSON syntax error)", async () => {
    const { fetchImpl } = answering(200, 'text/html', '<!doctype html><html></html>');
    const err = await failure(new HttpWorkerProtocol('http://h', 't', fetchImpl).lease('w1', 0));
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe('BERTH_SERVER_ANSWER_UNEXPECTED');
    expect((err as BerthError).message).toContain('http://h answered 200 with text/html');
  });

  it("says a refused registration that is not berth's answer (a proxy's page) as such", async () => {
    const { fetchImpl } = answering(404, 'text/html', '<h1>404 Not Found</h1>');
    const protocol = new HttpWorkerProtocol('http://h', 't', fetchImpl);
    const err = registrationRefused(
      'http://h',
      await failure(protocol.register({} as Parameters<HttpWorkerProtocol['register']>[0])),
    );
    expect((err as BerthError).code).toBe('BERTH_SERVER_ANSWER_UNEXPECTED');
    expect((err as BerthError).message).toContain('http://h answered 404 with text/html');
  });
});
