/**
 * A Docker API socket in front of the real engine: every request goes through to the engine,
 * except those a test's rule answers itself or leaves without an answer. This is how the tests
 * provoke what the real engine does only under load or in other implementations (an engine that
 * stops answering, an old API version, Podman's 409 on attach) while everything else stays real.
 */
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { tempDir } from './ownership.js';

export type ProxyAnswer =
  | 'pass'
  /** Read the request and never answer. */
  | 'stall'
  | { status: number; body?: unknown; headers?: Record<string, string> };

export interface EngineProxy {
  /** For DOCKER_HOST. */
  host: string;
  /** `METHOD /path` of every request, without the API version prefix and query. */
  seen: string[];
  stop(): Promise<void>;
}

function engineSocket(): string {
  const host = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  if (!host.startsWith('unix://'))
    throw new Error(`the engine proxy needs a unix-socket engine; DOCKER_HOST is ${host}`);
  return host.slice('unix://'.length);
}

export async function startEngineProxy(
  rule: (method: string, path: string) => ProxyAnswer,
): Promise<EngineProxy> {
  const upstream = engineSocket();
  const socket = path.join(tempDir('berth-engine-proxy-'), 'docker.sock');
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const route = (req.url ?? '').replace(/^\/v[\d.]+/, '').replace(/\?.*$/, '');
    seen.push(`${req.method} ${route}`);
    const answer = rule(req.method ?? 'GET', route);
    if (answer === 'stall') {
      req.resume();
      return;
    }
    if (answer !== 'pass') {
      req.resume();
      const body = answer.body === undefined ? '' : JSON.stringify(answer.body);
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(body);
      return;
    }
    const forward = http.request(
      { socketPath: upstream, method: req.method, path: req.url, headers: req.headers },
      (answered) => {
        res.writeHead(answered.statusCode ?? 502, answered.headers);
        answered.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    host: `unix://${socket}`,
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
