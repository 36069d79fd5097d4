/** Bodies from a real local HTTP server: endless, declared too large, and within the limit. */
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeEndlessly } from '../../test/harness/endless.js';
import { BodyTooLarge, readBody } from './http-body.js';

let server: http.Server;
let base: string;
let endlessBytesSent = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/endless') {
      res.writeHead(200);
      writeEndlessly(res, (bytes) => (endlessBytesSent += bytes));
    } else if (req.url === '/declared') {
      res.writeHead(200, { 'content-length': String(10 * 1024 * 1024 * 1024) });
      res.write('x');
    } else if (req.url === '/bomb') {
      // 1 KiB on the wire, 8 MiB once decoded.
      const body = gzipSync(Buffer.alloc(8 * 1024 * 1024, 0));
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': body.length });
      res.end(body);
    } else {
      res.writeHead(200).end('small answer');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('readBody', () => {
  it('reads a body within its limit', async () => {
    expect((await readBody(await fetch(`${base}/ok`), 1024)).toString()).toBe('small answer');
  });

  it('stops an endless body at the limit', async () => {
    const error = await readBody(await fetch(`${base}/endless`), 1024 * 1024).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BodyTooLarge);
    expect((error as BodyTooLarge).limit).toBe(1024 * 1024);
    // The connection was given up: the server could not go on sending without bound.
    await new Promise((resolve) => setImmediate(resolve));
    expect(endlessBytesSent).toBeLessThan(64 * 1024 * 1024);
  });

  it('refuses a declared length past the limit before reading', async () => {
    const error = await readBody(await fetch(`${base}/declared`), 1024).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BodyTooLarge);
  });

  it('counts decoded bytes, so a compressed answer cannot inflate past the limit', async () => {
    const error = await readBody(await fetch(`${base}/bomb`), 1024 * 1024).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BodyTooLarge);
  });
});
