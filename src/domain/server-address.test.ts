/** The server's address as every client reads it, and an answer that is not berth's API. */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BerthError } from './errors.js';
import {
  NOT_JSON_READ_LIMIT,
  parseApiAnswer,
  parseServerAddress,
  readAnswer,
  unexpectedAnswer,
} from './server-address.js';

function refusal(value: string, source = '--server'): BerthError {
  try {
    parseServerAddress(value, source);
  } catch (err) {
    return err as BerthError;
  }
  throw new Error(`${value} was taken`);
}

describe('parseServerAddress', () => {
  it.each([
    ['http://127.0.0.1:8080', 'http://127.0.0.1:8080'],
    ['http://127.0.0.1:8080/', 'http://127.0.0.1:8080'],
    ['  https://berth.example  ', 'https://berth.example'],
    ['http://127.0.0.1:8080/api/v1', 'http://127.0.0.1:8080'],
    ['http://127.0.0.1:8080/api/v1/', 'http://127.0.0.1:8080'],
    ['http://127.0.0.1:8080/api/v1/stacks', 'http://127.0.0.1:8080'],
    ['http://127.0.0.1:8080/ui', 'http://127.0.0.1:8080'],
    ['http://127.0.0.1:8080/ui/', 'http://127.0.0.1:8080'],
    ['http://127.0.0.1:8080/ui/runs/01JRUN?x=1#top', 'http://127.0.0.1:8080'],
    ['HTTP://Berth.Example:443/ui/', 'http://berth.example:443'],
    // A proxy's path before the server is kept; only the web page's and the API's are dropped.
    ['https://ci.example/berth/', 'https://ci.example/berth'],
    ['https://ci.example/berth/ui/stacks', 'https://ci.example/berth'],
    ['https://ci.example/berth/api/v1', 'https://ci.example/berth'],
    ['https://ci.example/guide', 'https://ci.example/guide'],
    ['https://ci.example/uid/', 'https://ci.example/uid'],
    // Only the end: a proxy path holding `ui` or `api/v1` segments of its own is kept.
    ['https://ci.example/tools/ui/berth', 'https://ci.example/tools/ui/berth'],
    ['https://ci.example/tools/ui/berth/ui/runs/01JRUN', 'https://ci.example/tools/ui/berth'],
    ['https://gw.example/api/v1/berth/api/v1/runs', 'https://gw.example/api/v1/berth'],
    ['https://ci.example/berth/ui/workers', 'https://ci.example/berth'],
  ])('reads %j as %s', (given, base) => {
    expect(parseServerAddress(given, '--server')).toBe(base);
  });

  it.each([
    ['127.0.0.1:8080', 'http://127.0.0.1:8080'],
    ['berth.example:8080/', 'http://berth.example:8080'],
    ['localhost:8080', 'http://localhost:8080'],
    ['ftp://berth.example', 'http://127.0.0.1:8080'],
    ['http//oops', 'http://127.0.0.1:8080'],
    ['', 'http://127.0.0.1:8080'],
  ])('refuses %j (no http:// or https://), with an example', (given, example) => {
    const err = refusal(given, 'BERTH_SERVER');
    expect(err.code).toBe('BERTH_USAGE');
    expect(err.message).toBe(
      `BERTH_SERVER ${JSON.stringify(given)} is not an http:// or https:// URL`,
    );
    expect(err.hint).toContain(`e.g. --server ${example} `);
  });

  it('refuses a user and password in the address, never repeating the password', () => {
    const err = refusal('https://me:hunter2@berth.example/', '--server');
    expect(err.code).toBe('BERTH_USAGE');
    expect(err.message).toBe(
      '--server names a user in the address (https://me@berth.example): berth sends its token, not a user and password in the URL',
    );
    expect(`${err.message} ${err.hint}`).not.toContain('hunter2');
  });
});

describe('parseApiAnswer', () => {
  const json = 'application/json; charset=utf-8';
  it.each([
    [
      { status: 200, contentType: json, text: '{"stacks":[]}' },
      { ok: true, body: { stacks: [] } },
    ],
    [
      { status: 404, contentType: json, text: '{"code":"NOT_FOUND"}' },
      { ok: true, body: { code: 'NOT_FOUND' } },
    ],
    [
      { status: 204, contentType: null, text: '' },
      { ok: true, body: undefined },
    ],
    [{ status: 200, contentType: 'text/html', text: '<!doctype html><html>' }, { ok: false }],
    [{ status: 200, contentType: 'text/plain', text: '{"stacks":[]}' }, { ok: false }],
    [{ status: 200, contentType: null, text: '{"stacks":[]}' }, { ok: false }],
    [{ status: 200, contentType: json, text: '' }, { ok: false }],
    [{ status: 200, contentType: json, text: '{"stacks":[' }, { ok: false }],
    [{ status: 502, contentType: 'text/html', text: '<h1>Bad Gateway</h1>' }, { ok: false }],
  ])('%j: %j', (answer, expected) => {
    expect(parseApiAnswer(answer)).toEqual(expected);
  });
});

describe('unexpectedAnswer', () => {
  it('says what answered and that the address may not be a berth server’s', () => {
    const err = unexpectedAnswer('http://h:8080', {
      status: 200,
      contentType: 'text/html; charset=utf-8',
      text: `<!doctype html>\n<html lang="en">\n${'x'.repeat(100)}`,
    });
    expect(err.code).toBe('BERTH_SERVER_ANSWER_UNEXPECTED');
    expect(err.message).toBe(
      `http://h:8080 answered 200 with text/html ("<!doctype html> <html lang=\\"en\\"> ${'x'.repeat(27)}…"), not berth's API: the address may not be a berth server's, or something before it (a proxy) answered instead`,
    );
  });

  it('says an answer without content type or body as such', () => {
    expect(unexpectedAnswer('http://h', { status: 404, contentType: null, text: '' }).message).toBe(
      "http://h answered 404 with no content type, not berth's API: the address may not be a berth server's, or something before it (a proxy) answered instead",
    );
  });

  it("quotes what answered escaped and cut short: a page's control characters never reach the terminal", () => {
    const said = unexpectedAnswer('http://h', {
      status: 200,
      contentType: 'text/html',
      text: `\u001b[2J\u001b]0;pwned\u0007<p>${'x'.repeat(10_000)}</p>`,
    });
    expect(said.message).not.toMatch(/[\u0000-\u001f]/);
    expect(said.message).toContain('"\\u001b[2J\\u001b]0;pwned\\u0007<p>xxx');
    expect(said.message.length).toBeLessThan(400);
  });

  it("takes a proxy's error page (5xx) for a berth server out of reach, worth another try", () => {
    const said = unexpectedAnswer('http://h', {
      status: 502,
      contentType: 'text/html',
      text: '<h1>502 Bad Gateway</h1>',
    });
    expect(said.code).toBe('BERTH_SERVER_UNREACHABLE');
    expect(said.retryable).toBe(true);
    expect(said.message).toBe(
      'http://h answered 502 with text/html ("<h1>502 Bad Gateway</h1>"), not berth\'s API: something before the berth server (a proxy) answered for it; the server may be down or restarting',
    );
    expect(said.hint).toContain('Try again in a moment');
  });
});

describe('readAnswer', () => {
  /** A loopback server whose every answer is written by `answer`; closed after `use`. */
  async function serving(
    answer: (res: ServerResponse) => void,
    use: (url: string, closed: Promise<void>) => Promise<void>,
  ): Promise<void> {
    let connectionClosed!: () => void;
    const closed = new Promise<void>((resolve) => (connectionClosed = resolve));
    const server = createServer((req, res) => {
      req.socket.on('close', connectionClosed);
      answer(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await use(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, closed);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it('reads only the start of a page that never ends, and lets its connection go', async () => {
    let written = 0;
    await serving(
      (res) => {
        res.writeHead(200, { 'content-type': 'text/html' });
        const page = Buffer.alloc(64 * 1024, 'a');
        const more = (): void => {
          // Endless: whoever reads it whole never gets an answer.
          let room = true;
          while (!res.destroyed && room) {
            room = res.write(page);
            written += page.length;
          }
          if (!res.destroyed) res.once('drain', more);
        };
        more();
      },
      async (url, closed) => {
        const answer = await readAnswer(await fetch(url));
        expect(answer.status).toBe(200);
        expect(answer.contentType).toBe('text/html');
        expect(answer.text.length).toBe(NOT_JSON_READ_LIMIT);
        expect(answer.text).toMatch(/^a+$/);
        await closed;
        expect(written).toBeGreaterThan(NOT_JSON_READ_LIMIT);
      },
    );
  });

  it("reads berth's JSON whole, however long", async () => {
    const long = 'x'.repeat(NOT_JSON_READ_LIMIT * 4);
    await serving(
      (res) => {
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ long }));
      },
      async (url) => {
        const answer = await readAnswer(await fetch(url));
        expect(parseApiAnswer(answer)).toEqual({ ok: true, body: { long } });
      },
    );
  });

  it('reads a short page that is not JSON whole', async () => {
    await serving(
      (res) => {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not here');
      },
      async (url) => {
        expect(await readAnswer(await fetch(url))).toEqual({
          status: 404,
          contentType: 'text/plain',
          text: 'not here',
        });
      },
    );
  });
});
