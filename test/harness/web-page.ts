/** A web server that is not berth's (an HTML page at every path): what a wrong address reaches. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface WebPage {
  url: string;
  close(): Promise<void>;
}

export async function startWebPage(): Promise<WebPage> {
  const page = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html>\n<html><body>Welcome to nginx!</body></html>\n');
  });
  await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(page.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => page.close(() => resolve())),
  };
}
