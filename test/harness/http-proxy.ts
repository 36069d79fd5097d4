/**
 * A forward HTTP proxy on loopback, as on a corporate network: CONNECT opens a tunnel to the
 * host asked for. It records what went through it, so a test can tell that berth used it.
 */
import http from 'node:http';
import net from 'node:net';

export interface HttpProxy {
  url: string;
  /** `CONNECT host:port` for each tunnel (other requests are refused and recorded too). */
  seen: string[];
  stop(): Promise<void>;
}

export async function startHttpProxy(): Promise<HttpProxy> {
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  // Clients tunnel through it (undici does so for http:// targets too); nothing else is served.
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(405).end();
  });
  server.on('connect', (req, client: net.Socket) => {
    seen.push(`CONNECT ${req.url}`);
    const [host, port] = (req.url ?? '').split(':');
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client).pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
