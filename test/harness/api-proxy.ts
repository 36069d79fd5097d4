/**
 * A proxy on loopback between berth workers and berth servers, for the resilience tests. Each
 * request goes to the next server in turn (two servers behind one address, as behind a load
 * balancer), and a test's rule may cut the worker's connection instead: before the request
 * reaches a server (`drop-request`), or after the server has handled it and before its answer
 * reaches the worker (`drop-answer`: the worker cannot know the request was done), or hold it
 * unanswered with the connection open (`hold`: a server or network that hangs), or answer as a
 * server without its database does (`unavailable`: 503 DATABASE_UNAVAILABLE). While no server
 * answers (restarting), connections are cut as a dead address would.
 */
import http from 'node:http';
import type net from 'node:net';

export type ProxyRule = (request: {
  method: string;
  path: string;
  /** How many requests with the same method and path (ids replaced by `:id`) came before. */
  nth: number;
}) => 'pass' | 'drop-request' | 'drop-answer' | 'hold' | 'unavailable';

export interface ApiProxy {
  url: string;
  /** Servers the requests go to, in turn (`http://host:port`). */
  setTargets(urls: string[]): void;
  setRule(rule: ProxyRule): void;
  /** Connections cut, by kind, per route pattern (`POST /api/v1/worker/runs/:id/logs`). */
  cuts: { request: Record<string, number>; answer: Record<string, number> };
  /** Requests held unanswered, per route pattern. */
  held: Record<string, number>;
  /** Requests passed to each target. */
  served: Record<string, number>;
  stop(): Promise<void>;
}

const pass: ProxyRule = () => 'pass';

export async function startApiProxy(targets: string[]): Promise<ApiProxy> {
  let current = [...targets];
  let turn = 0;
  let rule = pass;
  const seen = new Map<string, number>();
  const cuts = { request: {} as Record<string, number>, answer: {} as Record<string, number> };
  const served: Record<string, number> = {};
  const held: Record<string, number> = {};
  const sockets = new Set<net.Socket>();
  const agent = new http.Agent({ keepAlive: true });

  const server = http.createServer((req, res) => {
    const route = `${req.method} ${(req.url ?? '').split('?')[0]?.replace(/\/[0-9A-HJKMNP-TV-Z]{26}(?=\/|$)/g, '/:id')}`;
    const nth = seen.get(route) ?? 0;
    seen.set(route, nth + 1);
    const decision = rule({ method: req.method ?? '', path: route.split(' ')[1] ?? '', nth });
    if (decision === 'hold') {
      // Read and never answered: the connection stays open until the worker gives up on it.
      held[route] = (held[route] ?? 0) + 1;
      req.resume();
      return;
    }
    if (decision === 'unavailable') {
      cuts.request[route] = (cuts.request[route] ?? 0) + 1;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json; charset=utf-8' });
      res.end(
        JSON.stringify({
          code: 'DATABASE_UNAVAILABLE',
          message:
            'the berth server cannot use its database now (unreachable); nothing was changed',
        }),
      );
      return;
    }
    if (decision === 'drop-request') {
      cuts.request[route] = (cuts.request[route] ?? 0) + 1;
      req.socket.destroy();
      return;
    }
    const target = current[turn % Math.max(1, current.length)];
    turn += 1;
    if (!target) {
      req.socket.destroy();
      return;
    }
    served[target] = (served[target] ?? 0) + 1;
    const upstream = http.request(
      `${target}${req.url ?? '/'}`,
      { method: req.method, headers: req.headers, agent },
      (answer) => {
        if (decision === 'drop-answer') {
          cuts.answer[route] = (cuts.answer[route] ?? 0) + 1;
          answer.resume();
          req.socket.destroy();
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    // A server that is down (or went down mid-request): the worker sees its connection cut.
    upstream.on('error', () => req.socket.destroy());
    // The worker gave up (its long poll was aborted): so does the request to the server.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    setTargets: (urls) => {
      current = [...urls];
    },
    setRule: (next) => {
      rule = next;
    },
    cuts,
    held,
    served,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
