/**
 * The manifest check against a local server speaking the distribution API's bearer-token flow
 * (as Docker Hub, GHCR and Quay do; Debian's registry only offers htpasswd, which the
 * integration tests cover).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeEndlessly } from '../../test/harness/endless.js';
import { parseImageReference, type ImageReference } from '../domain/image-reference.js';
import {
  RegistryCheckError,
  checkManifest,
  engineAuthHeader,
  parseChallenge,
  registryBaseUrl,
} from './registry-client.js';

const MANIFEST = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
});
const DIGEST = `sha256:${createHash('sha256').update(MANIFEST).digest('hex')}`;
const seen: { path: string; authorization?: string; method: string; body: string }[] = [];
let server: http.Server;
let address: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      seen.push({
        path: req.url ?? '',
        authorization: req.headers.authorization,
        method: req.method ?? '',
        body,
      });
      if (url.pathname === '/token') {
        // Public repositories get a token anonymously; private ones need user:secret or a refresh token.
        const scope = url.searchParams.get('scope') ?? new URLSearchParams(body).get('scope') ?? '';
        const basicOk =
          req.headers.authorization === `Basic ${Buffer.from('user:secret').toString('base64')}`;
        const refreshOk = new URLSearchParams(body).get('refresh_token') === 'refresh-1';
        if (scope.includes('private') && !basicOk && !refreshOk) {
          res.writeHead(401).end();
          return;
        }
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ token: `tok-${scope}` }));
        return;
      }
      const match = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(url.pathname);
      const repo = match?.[1] ?? '';
      if (!req.headers.authorization?.startsWith('Bearer tok-')) {
        res
          .writeHead(401, {
            'www-authenticate': `Bearer realm="http://${address}/token",service="test-registry",scope="repository:${repo}:pull"`,
          })
          .end();
        return;
      }
      if (repo.endsWith('missing')) {
        res.writeHead(404).end();
        return;
      }
      // This registry leaves the digest out of its answers: the client must hash the manifest.
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      res.end(req.method === 'GET' ? MANIFEST : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  address = `127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function ref(path: string): ImageReference {
  const parsed = parseImageReference(`${address}/${path}`);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.reference;
}

describe('checkManifest with a bearer-token registry', () => {
  it('gets an anonymous token for a public repository and hashes the manifest when no digest header comes', async () => {
    seen.length = 0;
    expect(await checkManifest(ref('org/public:v1'), null)).toMatchObject({ digest: DIGEST });
    const tokenRequest = seen.find((s) => s.path.startsWith('/token'));
    expect(tokenRequest?.authorization).toBeUndefined();
    expect(tokenRequest?.path).toContain('scope=repository%3Aorg%2Fpublic%3Apull');
  });

  it('sends basic credentials only to the token service for a private repository', async () => {
    seen.length = 0;
    expect(
      await checkManifest(ref('org/private:v1'), { username: 'user', password: 'secret' }),
    ).toMatchObject({ digest: DIGEST });
    const manifestRequests = seen.filter((s) => s.path.startsWith('/v2/'));
    expect(manifestRequests.every((s) => !s.authorization?.startsWith('Basic'))).toBe(true);
  });

  it('uses an identity token as an OAuth2 refresh token', async () => {
    seen.length = 0;
    expect(
      await checkManifest(ref('org/private:v1'), { identityToken: 'refresh-1' }),
    ).toMatchObject({ digest: DIGEST });
    const post = seen.find((s) => s.path === '/token' && s.method === 'POST');
    expect(new URLSearchParams(post?.body).get('grant_type')).toBe('refresh_token');
  });

  it.each<[string, Parameters<typeof checkManifest>[1], string]>([
    ['org/private:v1', null, 'denied'],
    ['org/private:v1', { username: 'user', password: 'wrong' }, 'unauthorized'],
    ['org/missing:v1', null, 'not-found'],
  ])('%s with %j fails as %s', async (path, credentials, failure) => {
    const error = await checkManifest(ref(path), credentials).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryCheckError);
    expect((error as RegistryCheckError).failure).toBe(failure);
    expect((error as Error).message).not.toContain('wrong');
  });

  it('says a registry nobody answers for is unreachable', async () => {
    const parsed = parseImageReference('127.0.0.1:9/x:y');
    if (!parsed.ok) throw new Error('bad');
    await expect(checkManifest(parsed.reference, null)).rejects.toMatchObject({
      failure: 'unreachable',
    });
  });
});

describe('checkManifest with a hostile registry', () => {
  let hostile: http.Server;
  let hostileAddress: string;

  function endless(res: http.ServerResponse, headers: http.OutgoingHttpHeaders): void {
    res.writeHead(200, headers);
    writeEndlessly(res);
  }

  beforeAll(async () => {
    hostile = http.createServer((req, res) => {
      const path = req.url ?? '';
      if (path.startsWith('/v2/bad/digest/')) {
        res.writeHead(200, { 'docker-content-digest': 'sha256:../../v2/evil/\u0085x' }).end();
      } else if (path.startsWith('/v2/huge/manifest/')) {
        if (req.method === 'HEAD') res.writeHead(200).end();
        else endless(res, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      } else if (path.startsWith('/v2/huge/token/')) {
        res
          .writeHead(401, {
            'www-authenticate': `Bearer realm="http://${hostileAddress}/token",service="s"`,
          })
          .end();
      } else if (path.startsWith('/token')) {
        endless(res, { 'content-type': 'application/json' });
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
    hostileAddress = `127.0.0.1:${(hostile.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    hostile.closeAllConnections();
    await new Promise<void>((resolve) => hostile.close(() => resolve()));
  });

  function hostileRef(path: string): ImageReference {
    const parsed = parseImageReference(`${hostileAddress}/${path}`);
    if (!parsed.ok) throw new Error(parsed.error.message);
    return parsed.reference;
  }

  it('refuses a Docker-Content-Digest that is not a digest (it goes into references and paths)', async () => {
    const error = await checkManifest(hostileRef('bad/digest:v1'), null).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryCheckError);
    expect((error as RegistryCheckError).failure).toBe('protocol');
    expect((error as Error).message).toContain('Docker-Content-Digest that is not a digest');
    // Shown escaped: the header's control character cannot reach the terminal.
    expect((error as Error).message).toContain('sha256:../../v2/evil/\\u{0085}x');
  });

  it.each([
    ['an endless manifest', 'huge/manifest:v1', `more than 4.0 MiB for the manifest`],
    ['an endless token answer', 'huge/token:v1', `more than 1.0 MiB for a pull token`],
  ])('stops reading %s at its limit', async (_name, path, message) => {
    const error = await checkManifest(hostileRef(path), null).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryCheckError);
    expect((error as RegistryCheckError).failure).toBe('protocol');
    expect((error as Error).message).toContain(message);
  });
});

describe('helpers', () => {
  it('parses challenges', () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"',
      ),
    ).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/debian:pull',
      },
    });
    expect(parseChallenge('Basic realm="x"')).toEqual({ scheme: 'basic', params: { realm: 'x' } });
    expect(parseChallenge(null)).toBeNull();
  });

  it.each([
    ['docker.io', 'https://registry-1.docker.io'],
    ['ghcr.io', 'https://ghcr.io'],
    ['localhost:5000', 'http://localhost:5000'],
    ['127.0.0.1:5000', 'http://127.0.0.1:5000'],
    ['[::1]:5000', 'http://[::1]:5000'],
  ])('base URL of %s is %s', (registry, url) => {
    expect(registryBaseUrl(registry)).toBe(url);
  });

  it.each([
    ['u', '='],
    ['uu', ''],
    ['uuu', '=='],
  ])('keeps the padding X-Registry-Auth needs (user %j ends in %j)', (username, padding) => {
    const header = engineAuthHeader('docker.io', { username, password: 'p' });
    // Go's base64.URLEncoding rejects input whose padding was dropped.
    expect(header.length % 4).toBe(0);
    expect(/=*$/.exec(header)?.[0]).toBe(padding);
    expect(JSON.parse(Buffer.from(header, 'base64url').toString())).toMatchObject({ username });
  });

  it('encodes X-Registry-Auth as the engine decodes it (URL alphabet)', () => {
    const header = engineAuthHeader('docker.io', { username: 'u?>', password: 'p~~' });
    expect(header).not.toMatch(/[+/]/);
    const decoded = JSON.parse(
      Buffer.from(header.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString(),
    ) as Record<string, string>;
    expect(decoded).toEqual({
      username: 'u?>',
      password: 'p~~',
      serveraddress: 'https://index.docker.io/v1/',
    });
  });
});
