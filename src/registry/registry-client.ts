/**
 * Asks a registry whether an image can be pulled with the given credentials (or none), and which
 * manifest digest the reference resolves to: one manifest request per job, before anything runs,
 * even when the engine has the image cached. Speaks the distribution API: a HEAD (then GET if
 * needed) on /v2/<repository>/manifests/<tag|digest>, answering Bearer (token service) and Basic
 * challenges. Credentials never appear in an error message.
 */
import { createHash } from 'node:crypto';
import { httpFetch } from '../net/http-fetch.js';
import { BodyTooLarge, readBody } from '../net/http-body.js';
import { BerthError, fetchFailureCause } from '../domain/errors.js';
import { checkDigest, isDockerHub, type ImageReference } from '../domain/image-reference.js';
import { printable } from '../domain/printable.js';
import { formatBytes } from '../domain/units.js';

export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** OAuth2 refresh token for the registry's token service (`identitytoken`). */
  identityToken?: string;
  /** A bearer token sent to the registry as it is (`registrytoken`). */
  registryToken?: string;
}

export interface ManifestAnswer {
  digest: string;
  mediaType: string;
}

export type ManifestFailure = 'not-found' | 'unauthorized' | 'denied' | 'unreachable' | 'protocol';

/** A failed check, before the caller (who knows pool and credential source) gives it words. */
export class RegistryCheckError extends Error {
  constructor(
    readonly failure: ManifestFailure,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'RegistryCheckError';
  }
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/**
 * What berth reads from a registry, bounded: a manifest (registries are asked to accept at least
 * 4 MiB, and real ones are a few kB) and a token answer (a few kB).
 */
export const REGISTRY_BODY_LIMITS = {
  manifest: 4 * 1024 * 1024,
  token: 1024 * 1024,
} as const;

/** Loopback registries speak plain HTTP, as the Docker engine assumes for them. */
export function registryBaseUrl(registry: string): string {
  if (isDockerHub(registry)) return 'https://registry-1.docker.io';
  const host = registry.replace(/:\d+$/, '');
  const loopback = host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]';
  return `${loopback ? 'http' : 'https'}://${registry}`;
}

/** The server URL Docker uses for a registry in config files and credential helpers. */
export function registryServerUrl(registry: string): string {
  return isDockerHub(registry) ? 'https://index.docker.io/v1/' : registry;
}

interface Challenge {
  scheme: 'bearer' | 'basic';
  params: Record<string, string>;
}

export function parseChallenge(header: string | null): Challenge | null {
  if (!header) return null;
  const match = /^\s*(Bearer|Basic)\b(.*)$/i.exec(header);
  if (!match) return null;
  const params: Record<string, string> = {};
  for (const pair of (match[2] ?? '').matchAll(/([A-Za-z_]+)="([^"]*)"/g)) {
    params[(pair[1] as string).toLowerCase()] = pair[2] as string;
  }
  return { scheme: (match[1] as string).toLowerCase() as 'bearer' | 'basic', params };
}

function basic(credentials: RegistryCredentials | null): string | null {
  if (!credentials?.username || credentials.password === undefined) return null;
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

export interface CheckOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export async function checkManifest(
  reference: ImageReference,
  credentials: RegistryCredentials | null,
  options: CheckOptions = {},
): Promise<ManifestAnswer> {
  const base = registryBaseUrl(reference.registry);
  const target = reference.digest ?? reference.tag ?? 'latest';
  const url = `${base}/v2/${reference.repository}/manifests/${target}`;
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 30_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const request = async (
    method: 'HEAD' | 'GET',
    authorization: string | null,
  ): Promise<Response> => {
    try {
      return await httpFetch(url, {
        method,
        headers: { accept: MANIFEST_TYPES, ...(authorization ? { authorization } : {}) },
        signal,
        redirect: 'follow',
      });
    } catch (err) {
      const cause = fetchFailureCause(err);
      throw new RegistryCheckError(
        'unreachable',
        `cannot reach registry ${reference.registry} at ${base} (${cause})`,
      );
    }
  };

  let authorization = credentials?.registryToken ? `Bearer ${credentials.registryToken}` : null;
  let res = await request('HEAD', authorization);
  if (res.status === 401) {
    const challenge = parseChallenge(res.headers.get('www-authenticate'));
    if (challenge?.scheme === 'basic') {
      authorization = basic(credentials);
    } else if (challenge?.scheme === 'bearer') {
      authorization = await bearerToken(challenge, reference, credentials, signal);
    }
    if (authorization) res = await request('HEAD', authorization);
  }
  if (res.ok) {
    const digest = res.headers.get('docker-content-digest');
    const mediaType = res.headers.get('content-type') ?? '';
    if (digest) return { digest: checkedDigest(digest, reference.registry), mediaType };
    // Some registries leave the digest out of HEAD answers: hash the manifest itself.
    const full = await request('GET', authorization);
    if (full.ok) {
      const body = await bounded(full, REGISTRY_BODY_LIMITS.manifest, () => ({
        what: `the manifest of ${reference.repository}:${target}`,
        registry: reference.registry,
      }));
      return { digest: `sha256:${createHash('sha256').update(body).digest('hex')}`, mediaType };
    }
    res = full;
  }
  const status = res.status;
  if (status === 404) {
    throw new RegistryCheckError(
      'not-found',
      `registry ${reference.registry} has no manifest ${target} in ${reference.repository}`,
      status,
    );
  }
  if (status === 401) {
    throw new RegistryCheckError(
      'unauthorized',
      `registry ${reference.registry} requires authentication for ${reference.repository}`,
      status,
    );
  }
  if (status === 403) {
    throw new RegistryCheckError(
      'denied',
      `registry ${reference.registry} denied access to ${reference.repository}`,
      status,
    );
  }
  throw new RegistryCheckError(
    'protocol',
    `registry ${reference.registry} answered ${status} for the manifest of ${reference.repository}:${target}`,
    status,
  );
}

async function bearerToken(
  challenge: Challenge,
  reference: ImageReference,
  credentials: RegistryCredentials | null,
  signal: AbortSignal,
): Promise<string | null> {
  const realm = challenge.params.realm;
  if (!realm) return null;
  const scope = challenge.params.scope ?? `repository:${reference.repository}:pull`;
  let res: Response;
  try {
    if (credentials?.identityToken) {
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: credentials.identityToken,
        service: challenge.params.service ?? '',
        scope,
        client_id: 'berth',
      });
      res = await httpFetch(realm, { method: 'POST', body: form, signal });
    } else {
      const url = new URL(realm);
      if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
      url.searchParams.set('scope', scope);
      const auth = basic(credentials);
      res = await httpFetch(url, { headers: auth ? { authorization: auth } : {}, signal });
    }
  } catch (err) {
    const cause = fetchFailureCause(err);
    throw new RegistryCheckError(
      'unreachable',
      `cannot reach the token service of registry ${reference.registry} (${cause})`,
    );
  }
  if (res.status === 401 || res.status === 403) {
    throw new RegistryCheckError(
      credentials ? 'unauthorized' : 'denied',
      `the token service of registry ${reference.registry} refused a pull token for ${reference.repository}`,
      res.status,
    );
  }
  if (!res.ok) return null;
  const text = await bounded(res, REGISTRY_BODY_LIMITS.token, () => ({
    what: 'a pull token',
    registry: reference.registry,
  }));
  let body: { token?: unknown; access_token?: unknown };
  try {
    body = JSON.parse(text.toString('utf8')) as typeof body;
  } catch {
    return null;
  }
  if (typeof body !== 'object' || body === null) return null;
  const token = body.token ?? body.access_token;
  return typeof token === 'string' && token !== '' ? `Bearer ${token}` : null;
}

/** A body within its limit; past it, a protocol failure naming the limit. */
async function bounded(
  res: Response,
  limit: number,
  about: () => { what: string; registry: string },
): Promise<Buffer> {
  try {
    return await readBody(res, limit);
  } catch (err) {
    const { what, registry } = about();
    if (err instanceof BodyTooLarge) {
      throw new RegistryCheckError(
        'protocol',
        `registry ${registry} answered more than ${formatBytes(limit)} for ${what}; berth stopped reading`,
      );
    }
    throw new RegistryCheckError(
      'unreachable',
      `cannot read ${what} from registry ${registry} (${fetchFailureCause(err)})`,
    );
  }
}

/**
 * The registry's Docker-Content-Digest, used in the pinned reference the engine pulls and in
 * URL paths: only a digest by the OCI grammar (sha256: 64 lowercase hex digits, …) is taken.
 */
function checkedDigest(digest: string, registry: string): string {
  const problem = digest.length > 256 ? 'it is too long' : checkDigest(digest);
  if (problem === null) return digest;
  const shown = printable(digest.length > 80 ? `${digest.slice(0, 80)}…` : digest);
  throw new RegistryCheckError(
    'protocol',
    `registry ${registry} answered a Docker-Content-Digest that is not a digest ("${shown}": ${printable(problem)})`,
  );
}

/** The X-Registry-Auth header value the engine takes for a pull. */
export function engineAuthHeader(registry: string, credentials: RegistryCredentials): string {
  const payload = credentials.identityToken
    ? { identitytoken: credentials.identityToken, serveraddress: registryServerUrl(registry) }
    : credentials.registryToken
      ? { registrytoken: credentials.registryToken, serveraddress: registryServerUrl(registry) }
      : {
          username: credentials.username,
          password: credentials.password,
          serveraddress: registryServerUrl(registry),
        };
  // The engine decodes with Go's base64.URLEncoding: URL alphabet, padding kept.
  return Buffer.from(JSON.stringify(payload))
    .toString('base64')
    .replace(/\+/g, '-')
    .replace(/\//g, '_');
}

/** Used by callers that want a BerthError for failures they have no better words for. */
export function registryError(err: RegistryCheckError): BerthError {
  return new BerthError(
    err.failure === 'not-found' ? 'BERTH_IMAGE_NOT_FOUND' : 'BERTH_IMAGE_PULL_FAILED',
    err.message,
    { cause: err },
  );
}
