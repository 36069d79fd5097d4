/**
 * A registry token service, as Docker Hub, GHCR and most registries use (the distribution
 * project's token authentication): a client the registry turned away with
 * `WWW-Authenticate: Bearer realm=…,service=…,scope=…` asks here with its user and password and
 * gets a JWT, signed (RS256) with a key whose certificate the registry trusts
 * (`auth.token.rootcertbundle`), granting the actions asked for on the repositories asked for.
 * The real registry (Debian's docker-registry, `startRegistry({ token })`) verifies it.
 */
import { randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { makeCa } from './certs.js';
import { tempDir } from './ownership.js';

export interface TokenIssuer {
  /** For the registry's config: auth.token.realm/service/issuer/rootcertbundle. */
  realm: string;
  service: string;
  issuer: string;
  rootCertBundle: string;
  /** `user scope` of every token issued (`-` for a request without credentials). */
  issued: string[];
  stop(): Promise<void>;
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

export async function startTokenIssuer(user: {
  name: string;
  password: string;
  /** An OAuth2 refresh token (Docker's `identitytoken`) that stands for the user. */
  identityToken?: string;
}): Promise<TokenIssuer> {
  const ca = makeCa(tempDir('berth-token-issuer-'), 'berth test token issuer');
  const key = readFileSync(ca.key, 'utf8');
  const certificateDer = readFileSync(ca.cert, 'utf8')
    .replace(/-----(BEGIN|END) CERTIFICATE-----/g, '')
    .replace(/\s+/g, '');
  const service = 'berth-test-registry';
  const issuer = 'berth-test-token-issuer';
  const issued: string[] = [];
  const sockets = new Set<net.Socket>();

  const server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      // OAuth2: grant_type=refresh_token&refresh_token=…&service=…&scope=… in a form body.
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString());
        const url = new URL(req.url ?? '/', 'http://issuer');
        for (const [k, v] of form) url.searchParams.append(k, v);
        const ok =
          form.get('grant_type') === 'refresh_token' &&
          user.identityToken !== undefined &&
          form.get('refresh_token') === user.identityToken;
        answer(url, ok ? user.name : undefined, res, 'refresh token');
      });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://issuer');
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const [name, ...rest] = basic ? Buffer.from(basic, 'base64').toString().split(':') : [];
    const authenticated = name === user.name && rest.join(':') === user.password;
    answer(url, authenticated ? name : undefined, res, name ?? '-');
  });
  const answer = (
    url: URL,
    name: string | undefined,
    res: http.ServerResponse,
    who: string,
  ): void => {
    const authenticated = name !== undefined;
    if (url.pathname !== '/token' || url.searchParams.get('service') !== service) {
      res.writeHead(404).end();
      return;
    }
    if (!authenticated) {
      issued.push(`${who} refused`);
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    // scope=repository:NAME:pull,push (repeatable); the test user may do anything asked.
    const access = url.searchParams.getAll('scope').flatMap((scope) => {
      const [type, ...parts] = scope.split(':');
      const actions = parts.pop()?.split(',') ?? [];
      return type === 'repository' ? [{ type, name: parts.join(':'), actions }] : [];
    });
    issued.push(
      `${who === 'refresh token' ? `${name} (refresh token)` : name} ${url.searchParams.getAll('scope').join(' ')}`,
    );
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certificateDer] };
    const claims = {
      iss: issuer,
      sub: name,
      aud: service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${input}.${b64url(sign('sha256', Buffer.from(input), key))}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: 300,
        issued_at: new Date(now * 1000).toISOString(),
      }),
    );
  };
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootCertBundle: ca.cert,
    issued,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
