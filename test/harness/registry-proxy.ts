/**
 * A loopback HTTP front for a test registry: requests go through to the real registry, except
 * those the test's rule stalls (never answered) or drops (the connection is cut half-way through
 * the body). The engine pulls through it as from any plain-HTTP loopback registry.
 */
import http from 'node:http';
import type net from 'node:net';

export type RegistryFault = 'pass' | 'stall' | 'drop';

export interface RegistryProxy {
  /** host:port, for image references. */
  address: string;
  /** `METHOD path` of every request, with what the rule did to it. */
  seen: string[];
  stop(): Promise<void>;
}

export async function startRegistryProxy(
  registry: string,
  rule: (method: string, path: string) => RegistryFault,
): Promise<RegistryProxy> {
  const [host, port] = registry.split(':');
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const fault = rule(req.method ?? 'GET', req.url ?? '');
    seen.push(`${req.method} ${req.url} ${fault}`);
    if (fault === 'stall') {
      req.resume();
      return;
    }
    const forward = http.request(
      { host, port: Number(port), method: req.method, path: req.url, headers: req.headers },
      (answered) => {
        res.writeHead(answered.statusCode ?? 502, answered.headers);
        if (fault === 'pass') {
          answered.pipe(res);
          return;
        }
        // Half of the body, then the connection goes away as a broken network would leave it.
        const half = Number(answered.headers['content-length'] ?? 0) / 2;
        let sent = 0;
        answered.on('data', (chunk: Buffer) => {
          if (sent >= half) return;
          res.write(chunk.subarray(0, Math.max(0, half - sent)));
          sent += chunk.length;
          if (sent >= half) {
            answered.destroy();
            res.socket?.destroy();
          }
        });
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
