/**
 * The berth server's address, as every remote command and the worker read it, and what they say
 * when something that is not berth's API answers there.
 */
import { BerthError } from './errors.js';

/**
 * The server's base address (scheme, host, port and any path a proxy serves it under, no trailing
 * `/`) from what a user gave as `source` (`--server`, `BERTH_SERVER`, the saved login): the
 * address `berth server` printed, the web page's (`…/ui/runs/RUN`) or the API's (`…/api/v1/`)
 * all name the same server. Refuses an address without http:// or https://, which fetch would
 * otherwise refuse in its own words.
 */
export function parseServerAddress(value: string, source: string): string {
  let url: URL | null = null;
  try {
    url = new URL(value.trim());
  } catch {
    // Said below.
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new BerthError(
      'BERTH_USAGE',
      `${source} ${JSON.stringify(value)} is not an http:// or https:// URL`,
      {
        hint: `Give the address berth server printed when it started, with its scheme: e.g. --server ${schemeGuess(value)} (or BERTH_SERVER).`,
      },
    );
  }
  if (url.username || url.password) {
    throw new BerthError(
      'BERTH_USAGE',
      `${source} names a user in the address (${url.protocol}//${url.username ? `${decodeURIComponent(url.username)}@` : ''}${url.host}): berth sends its token, not a user and password in the URL`,
      {
        hint: `Give the address without them (e.g. ${url.origin}) and the token in BERTH_TOKEN (or berth login).`,
      },
    );
  }
  // Only the end of the path: the web page's own routes (under /ui of the server) or the API's
  // prefix with any API path after it (the clients add the prefix themselves). The last such
  // segment counts, so a proxy's own path before it (…/tools/ui/berth, …/api/v1/berth) is kept.
  const base = url.pathname
    .replace(/^(.*)\/ui(\/(stacks|runs)(\/[^/]+)?|\/(workers|tokens))?\/?$/, '$1')
    .replace(/^(.*)\/api\/v1(\/.*)?$/, '$1')
    .replace(/\/+$/, '');
  return `${url.origin}${base}`;
}

/**
 * The example for an address without a scheme: the value with http:// when it reads as a host (a
 * name with a dot, localhost, or a port) and maybe a path; else the address berth server prints.
 */
function schemeGuess(value: string): string {
  const bare = /^([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:\d+)?(\/\S*)?$/i.exec(value.trim());
  const host = bare?.[1] ?? '';
  if (bare && (host.includes('.') || host.startsWith('[') || host === 'localhost' || bare[3]))
    return `http://${bare[0].replace(/\/+$/, '')}`;
  return 'http://127.0.0.1:8080';
}

/** One answer of the server, as far as telling berth's API from anything else goes. */
export interface ServerAnswer {
  status: number;
  contentType: string | null;
  text: string;
}

/**
 * How much of an answer that is not JSON is read: enough to quote its first words. Such an answer
 * is a web page or a proxy's page, never berth's API, and it may be large or never end.
 */
export const NOT_JSON_READ_LIMIT = 16 * 1024;

/**
 * An answer as far as `parseApiAnswer` and `unexpectedAnswer` read it: berth's JSON whole, any
 * other answer only its first NOT_JSON_READ_LIMIT bytes (the rest is not waited for).
 */
export async function readAnswer(res: Response): Promise<ServerAnswer> {
  const contentType = res.headers.get('content-type');
  return {
    status: res.status,
    contentType,
    text: isJson(contentType) ? await res.text() : await readStart(res, NOT_JSON_READ_LIMIT),
  };
}

function isJson(contentType: string | null): boolean {
  return /\bjson\b/i.test(contentType ?? '');
}

/** The first `limit` bytes of a body (fewer if it ends sooner), as text; the rest is dropped. */
async function readStart(res: Response, limit: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const start = new Uint8Array(limit);
  let size = 0;
  try {
    while (size < limit) {
      const read = (await reader.read()) as { done: boolean; value?: Uint8Array };
      if (read.done || !read.value) break;
      const taken = read.value.subarray(0, limit - size);
      start.set(taken, size);
      size += taken.byteLength;
    }
  } finally {
    // Not read to its end: the connection is given up rather than drained.
    if (size >= limit) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
  return new TextDecoder().decode(start.subarray(0, size));
}

/**
 * The body of an answer of berth's API: JSON with a JSON content type, or nothing for 204. Anything
 * else (a web page, a proxy's error page, a cut body) is `undefined` with `ok: false`.
 */
export function parseApiAnswer(answer: ServerAnswer): { ok: true; body: unknown } | { ok: false } {
  if (answer.status === 204 && answer.text === '') return { ok: true, body: undefined };
  if (!isJson(answer.contentType)) return { ok: false };
  try {
    return { ok: true, body: JSON.parse(answer.text) as unknown };
  } catch {
    return { ok: false };
  }
}

/**
 * What to say when `server` answered with something that is not berth's API: what answered (its
 * status, content type and first words). A server error (5xx) is a proxy answering for a berth
 * server that is down or restarting: unreachable, worth another try; anything else means the
 * address may not be a berth server's.
 */
export function unexpectedAnswer(server: string, answer: ServerAnswer): BerthError {
  const words = answer.text.replace(/\s+/g, ' ').trim();
  const start = words.length > 60 ? `${words.slice(0, 60)}…` : words;
  const what = `${server} answered ${answer.status} with ${answer.contentType ? answer.contentType.split(';')[0] : 'no content type'}${start ? ` (${JSON.stringify(start)})` : ''}`;
  if (answer.status >= 500)
    return new BerthError(
      'BERTH_SERVER_UNREACHABLE',
      `${what}, not berth's API: something before the berth server (a proxy) answered for it; the server may be down or restarting`,
      {
        hint: 'Try again in a moment; if it lasts, check that berth server runs behind that address and that the proxy passes /api/v1 on to it.',
      },
    );
  return new BerthError(
    'BERTH_SERVER_ANSWER_UNEXPECTED',
    `${what}, not berth's API: the address may not be a berth server's, or something before it (a proxy) answered instead`,
  );
}

/**
 * Ports the fetch standard's clients refuse to connect to ("bad ports": Node's fetch, which
 * berth's command line and workers use, and every web browser): a server listening on one could
 * be reached by nobody.
 */
export const FETCH_BAD_PORTS: ReadonlySet<number> = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
  103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
  512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993,
  995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668,
  6669, 6679, 6697, 10080,
]);
