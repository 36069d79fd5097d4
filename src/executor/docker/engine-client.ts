/**
 * A small client for the Docker Engine API over its Unix socket or TCP (plain, or TLS with the
 * Docker CLI's DOCKER_TLS_VERIFY and DOCKER_CERT_PATH). berth speaks the API directly instead of
 * through a generic SDK: it needs a dozen endpoints, full control of deadlines and streams, and a
 * start-up free of unused dependencies (see docs/development/architecture.md). Every call has a
 * deadline; no request body (which can carry secrets in `Env`) is ever put into a URL or an
 * error message.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BerthError } from '../../domain/errors.js';
import {
  DockerApiError,
  connectionError,
  isPlainToTls,
  plainToTlsEngine,
} from './daemon-errors.js';

/** The highest API version berth was written against; older engines are asked in their own. */
const MAX_API_VERSION = '1.45';
const MIN_API_VERSION = '1.41';
const DEFAULT_DEADLINE_MS = 30_000;

export interface EngineTls {
  /** DOCKER_CERT_PATH, for messages. */
  certPath: string;
  /** ca.pem: the authority the engine's certificate must chain to (else the system's). */
  ca?: Buffer;
  /** cert.pem and key.pem: berth's client certificate, when the engine asks for one. */
  cert?: Buffer;
  key?: Buffer;
}

export interface EngineEndpoint {
  /** What the user configured, for messages: e.g. `unix:///var/run/docker.sock`. */
  display: string;
  socketPath?: string;
  host?: string;
  port?: number;
  /** TCP with TLS, the engine's certificate always verified. */
  tls?: EngineTls;
}

/**
 * Reads DOCKER_HOST the way the Docker CLI does: unix:// and tcp://, with TLS when
 * DOCKER_TLS_VERIFY is set (certificates from DOCKER_CERT_PATH, default ~/.docker).
 */
export function parseDockerHost(env: NodeJS.ProcessEnv): EngineEndpoint {
  const raw = env.DOCKER_HOST?.trim() || 'unix:///var/run/docker.sock';
  if (raw.startsWith('unix://')) {
    return { display: raw, socketPath: raw.slice('unix://'.length) };
  }
  const tcp = /^tcp:\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(raw);
  if (tcp) {
    const host = (tcp[1] as string).replace(/^\[|\]$/g, '');
    const tls = engineTls(env, raw);
    return { display: raw, host, port: tcp[2] ? Number(tcp[2]) : tls ? 2376 : 2375, tls };
  }
  throw new BerthError('BERTH_USAGE', `DOCKER_HOST=${raw} is not supported`, {
    hint: 'Use unix:///path/to/docker.sock or tcp://HOST:PORT, with DOCKER_TLS_VERIFY=1 for TLS (ssh:// endpoints are not supported yet).',
  });
}

function engineTls(env: NodeJS.ProcessEnv, host: string): EngineTls | undefined {
  const verify = Boolean(env.DOCKER_TLS_VERIFY?.trim());
  if (!verify) {
    if (env.DOCKER_TLS?.trim()) {
      throw new BerthError(
        'BERTH_USAGE',
        `DOCKER_TLS is set without DOCKER_TLS_VERIFY: berth does not talk to the engine at ${host} without checking its certificate`,
        {
          hint: 'Set DOCKER_TLS_VERIFY=1 and put the CA that signed the engine certificate in DOCKER_CERT_PATH/ca.pem.',
        },
      );
    }
    return undefined;
  }
  const certPath = env.DOCKER_CERT_PATH?.trim() || path.join(homedir(), '.docker');
  const read = (name: string): Buffer | undefined => {
    try {
      return readFileSync(path.join(certPath, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new BerthError(
        'BERTH_USAGE',
        `cannot read ${path.join(certPath, name)} (DOCKER_CERT_PATH): ${(err as Error).message}`,
        {
          cause: err,
          hint: 'Make the TLS files in DOCKER_CERT_PATH readable by the user berth runs as.',
        },
      );
    }
  };
  const [ca, cert, key] = [read('ca.pem'), read('cert.pem'), read('key.pem')];
  if (Boolean(cert) !== Boolean(key)) {
    throw new BerthError(
      'BERTH_USAGE',
      `DOCKER_CERT_PATH=${certPath} has ${cert ? 'cert.pem but no key.pem' : 'key.pem but no cert.pem'}`,
      {
        hint: 'Put both the client certificate (cert.pem) and its key (key.pem) there, or neither.',
      },
    );
  }
  return { certPath, ca, cert, key };
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** A JSON-serialisable body, or a stream sent as-is (tar archives). */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
  /** Deadline for the whole call (for streams: until the response headers arrive). */
  deadlineMs?: number;
  signal?: AbortSignal;
}

function compareVersions(a: string, b: string): number {
  const [aMajor = 0, aMinor = 0] = a.split('.').map(Number);
  const [bMajor = 0, bMinor = 0] = b.split('.').map(Number);
  return aMajor === bMajor ? aMinor - bMinor : aMajor - bMajor;
}

export class EngineClient {
  private apiVersion: string | undefined;
  private readonly agent: http.Agent;

  constructor(readonly endpoint: EngineEndpoint) {
    const tls = endpoint.tls;
    this.agent = tls
      ? new https.Agent({
          keepAlive: true,
          maxSockets: 16,
          ca: tls.ca,
          cert: tls.cert,
          key: tls.key,
        })
      : new http.Agent({ keepAlive: true, maxSockets: 16 });
  }

  static fromEnv(env: NodeJS.ProcessEnv): EngineClient {
    return new EngineClient(parseDockerHost(env));
  }

  /** Closes idle keep-alive sockets so the process can exit. */
  close(): void {
    this.agent.destroy();
  }

  /**
   * Checks the engine answers and settles the API version. Safe to call more than once. Throws
   * BERTH_DOCKER_UNREACHABLE / BERTH_DOCKER_PERMISSION with the endpoint that was tried.
   */
  async ping(): Promise<string> {
    if (this.apiVersion) return this.apiVersion;
    const res = await this.send('GET', '/_ping', { deadlineMs: 10_000 }, false);
    if (this.endpoint.host && !this.endpoint.tls && res.statusCode === 400) {
      const text = await readAll(res);
      if (isPlainToTls(400, text))
        throw plainToTlsEngine(
          this.endpoint,
          `speaks TLS and refused a plain connection: ${text.trim()}`,
        );
    }
    res.resume();
    const header = res.headers['api-version'];
    const server = typeof header === 'string' ? header : MIN_API_VERSION;
    if (compareVersions(server, MIN_API_VERSION) < 0) {
      throw new BerthError(
        'BERTH_DOCKER_API',
        `the Docker engine at ${this.endpoint.display} speaks API ${server}; berth needs ${MIN_API_VERSION} or newer`,
        { hint: 'Upgrade the Docker engine to 20.10 or newer.' },
      );
    }
    this.apiVersion = compareVersions(server, MAX_API_VERSION) > 0 ? MAX_API_VERSION : server;
    return this.apiVersion;
  }

  /**
   * The engine's release and API version (GET /version; '?' for what it does not say), and the
   * two as people read them: `Docker 20.10.24 (API 1.41)`.
   */
  async version(): Promise<{ release: string; api: string; text: string }> {
    const answer = await this.json<{ Version?: string; ApiVersion?: string }>('GET', '/version');
    const release = answer.Version ?? '?';
    const api = answer.ApiVersion ?? '?';
    return { release, api, text: `Docker ${release} (API ${api})` };
  }

  /** A call whose answer is JSON (or empty). */
  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.stream(method, path, options);
    const text = await readAll(res);
    return (text.length === 0 ? undefined : JSON.parse(text)) as T;
  }

  /**
   * A call whose answer is the engine's raw output stream (exec start, attach), taken over from
   * HTTP as the Docker CLI does (`Upgrade: tcp`): the connection itself is returned, so every
   * read goes to the caller without passing through the HTTP client's parser and body stream.
   * An engine that answers without switching protocols gives its response body instead, the
   * same bytes. The caller must consume or destroy it.
   */
  async hijack(method: string, path: string, options: RequestOptions = {}): Promise<Readable> {
    const version = await this.ping();
    return this.send(method, `/v${version}${path}`, options, true, true);
  }

  /** A call whose answer is a stream; the caller must consume or destroy it. */
  async stream(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<http.IncomingMessage> {
    const version = await this.ping();
    return this.send(method, `/v${version}${path}`, options, true);
  }

  private send(
    method: string,
    path: string,
    options: RequestOptions,
    checkStatus: boolean,
  ): Promise<http.IncomingMessage>;
  private send(
    method: string,
    path: string,
    options: RequestOptions,
    checkStatus: boolean,
    upgrade: true,
  ): Promise<Readable>;
  private send(
    method: string,
    path: string,
    options: RequestOptions,
    checkStatus: boolean,
    upgrade = false,
  ): Promise<Readable> {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) query.set(key, String(value));
    }
    const search = query.size > 0 ? `?${query.toString()}` : '';
    const operation = `${method} ${path.replace(/^\/v[\d.]+/, '')}`;
    const isStream = isReadable(options.body);
    const payload =
      options.body === undefined || isStream
        ? undefined
        : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string> = {
      ...options.headers,
      ...(upgrade ? { connection: 'Upgrade', upgrade: 'tcp' } : {}),
    };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    } else if (isStream) {
      headers['content-type'] = options.contentType ?? 'application/x-tar';
    }
    const deadline = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    return new Promise((resolve, reject) => {
      const req = (this.endpoint.tls ? https : http).request({
        method,
        path: path + search,
        headers,
        agent: this.agent,
        ...(this.endpoint.socketPath
          ? { socketPath: this.endpoint.socketPath }
          : { host: this.endpoint.host, port: this.endpoint.port }),
      });
      let settled = false;
      const timer = setTimeout(() => {
        fail(
          new BerthError(
            'BERTH_DOCKER_TIMEOUT',
            `the Docker engine at ${this.endpoint.display} did not answer ${operation} within ${deadline / 1000}s`,
          ),
        );
      }, deadline);
      const onAbort = (): void => fail(options.signal?.reason ?? new Error('aborted'));
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        req.destroy();
        reject(err instanceof Error ? err : new Error(String(err)));
      };
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => {
        fail(err.code ? connectionError(err, this.endpoint) : err);
      });
      /** The answer came (false: too late, the call already failed; `late` is dropped). */
      const answered = (late: { destroy(): void }): boolean => {
        if (settled) {
          late.destroy();
          return false;
        }
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        return true;
      };
      req.on('upgrade', (_res, socket, head) => {
        if (!answered(socket)) return;
        // Bytes of the stream that came with the response's headers are read first.
        if (head.length > 0) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', (res) => {
        if (!answered(res)) return;
        const status = res.statusCode ?? 0;
        if (!checkStatus || status < 400) {
          resolve(res);
          return;
        }
        readAll(res).then(
          (text) => reject(new DockerApiError(status, engineMessage(text), operation)),
          reject,
        );
      });
      if (isStream) {
        (options.body as Readable).on('error', fail);
        (options.body as Readable).pipe(req);
      } else {
        req.end(payload);
      }
    });
  }
}

function isReadable(value: unknown): value is Readable {
  return (
    typeof value === 'object' && value !== null && typeof (value as Readable).pipe === 'function'
  );
}

function engineMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // Not JSON: the engine's plain-text answer is the message.
  }
  return text.trim() || '(no message)';
}

export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Reads a stream of JSON messages (one per line, as /images/create and /build send them) and
 * hands each to `onMessage`. Resolves when the stream ends.
 */
export async function readJsonLines(
  stream: Readable,
  onMessage: (message: Record<string, unknown>) => void,
): Promise<void> {
  let buffered = '';
  for await (const chunk of stream) {
    buffered += (chunk as Buffer).toString('utf8');
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) onMessage(JSON.parse(line) as Record<string, unknown>);
      newline = buffered.indexOf('\n');
    }
  }
  if (buffered.trim()) onMessage(JSON.parse(buffered) as Record<string, unknown>);
}
