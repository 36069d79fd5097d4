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
  const base = url.pathname
    // The web page's own paths: the page is served under /ui/ of the server.
    .replace(/\/ui(\/.*)?$/, '')
    // The API's prefix, which the clients add themselves (and any API path after it).
    .replace(/\/api\/v1(\/.*)?$/, '')
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
 * The body of an answer of berth's API: JSON with a JSON content type, or nothing for 204. Anything
 * else (a web page, a proxy's error page, a cut body) is `undefined` with `ok: false`.
 */
export function parseApiAnswer(answer: ServerAnswer): { ok: true; body: unknown } | { ok: false } {
  if (answer.status === 204 && answer.text === '') return { ok: true, body: undefined };
  if (!/\bjson\b/i.test(answer.contentType ?? '')) return { ok: false };
  try {
    return { ok: true, body: JSON.parse(answer.text) as unknown };
  } catch {
    return { ok: false };
  }
}

/**
 * What to say when `server` answered with something that is not berth's API: what answered (its
 * status, content type and first words), and that the address may not be a berth server's.
 */
export function unexpectedAnswer(server: string, answer: ServerAnswer): BerthError {
  const words = answer.text.replace(/\s+/g, ' ').trim();
  const start = words.length > 60 ? `${words.slice(0, 60)}…` : words;
  return new BerthError(
    'BERTH_SERVER_ANSWER_UNEXPECTED',
    `${server} answered ${answer.status} with ${answer.contentType ? answer.contentType.split(';')[0] : 'no content type'}${start ? ` (${JSON.stringify(start)})` : ''}, not berth's API: the address may not be a berth server's, or something before it (a proxy) answered instead`,
  );
}
