/**
 * berth's own outbound HTTP (registry checks, tool releases) honours the proxy settings every
 * tool on a corporate network reads: HTTPS_PROXY, HTTP_PROXY and NO_PROXY (either case). Node's
 * built-in fetch ignores them, so when one is set the requests go through undici's proxy agent;
 * otherwise they use the built-in fetch and undici is never loaded. (The Docker engine's own
 * pulls follow the engine's proxy configuration, not these variables.)
 */

const PROXY_VARIABLES = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'];

export function proxyConfigured(env: NodeJS.ProcessEnv): boolean {
  return PROXY_VARIABLES.some((name) => Boolean(env[name]?.trim()));
}

let proxied: typeof fetch | undefined;

/** `fetch`, through the configured proxy when there is one. */
export async function httpFetch(input: string | URL, init: RequestInit = {}): Promise<Response> {
  if (!proxyConfigured(process.env)) return fetch(input, init);
  proxied ??= await proxiedFetch();
  return proxied(input, init);
}

async function proxiedFetch(): Promise<typeof fetch> {
  const undici = await import('undici');
  const dispatcher = new undici.EnvHttpProxyAgent();
  // undici's fetch is the one Node's is built from; its Response is the same shape.
  return ((input: string | URL, init: RequestInit = {}) =>
    undici.fetch(input, {
      ...(init as Parameters<typeof undici.fetch>[1]),
      dispatcher,
    })) as unknown as typeof fetch;
}
