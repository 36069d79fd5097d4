/**
 * The web page, served by `berth server` itself: the files `npm run build` writes to dist/web,
 * read once at start and kept in memory (a few tens of KiB), so nothing is fetched from
 * elsewhere and no file outside that folder can be asked for. `/` redirects to `/ui/`; any
 * `/ui/…` path that is not a file is the page itself, which routes in the browser.
 *
 * Every answer carries the security headers: a strict Content-Security-Policy (scripts, styles
 * and connections from this origin only, no inline script or style, no frames), no sniffing, no
 * referrer. API answers get `default-src 'none'`: they are data, never a document.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';

const PAGE_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');
const DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox";

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json',
};

interface WebFile {
  type: string;
  body: Buffer;
}

/** Every file below `root`, by its URL path below /ui/ (forward slashes). */
export function readWebFiles(root: string): Map<string, WebFile> {
  const files = new Map<string, WebFile>();
  const walk = (dir: string, prefix: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full, `${prefix}${name}/`);
      else {
        const type = TYPES[path.extname(name)];
        if (type) files.set(`${prefix}${name}`, { type, body: readFileSync(full) });
      }
    }
  };
  walk(root, '');
  return files;
}

/**
 * The route a request reached: the one the router matched (it decodes the path, so
 * `/%61pi/v1/pools` is `/api/v1/pools`), or the raw path when none matched. Whether a request is
 * the API's is read from this, never from the raw address, which could spell an API route so as
 * to pass for a page.
 */
export function routeOf(request: FastifyRequest): string {
  return request.routeOptions.url ?? (request.url.split('?')[0] as string);
}

/** Security headers on every answer: the page's policy, or the data policy for the API. */
export function securityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    const isApi = routeOf(request).startsWith('/api/');
    void reply.headers({
      'content-security-policy': isApi ? DATA_POLICY : PAGE_POLICY,
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
    });
    if (!reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store');
    return payload;
  });
}

export function registerWebPage(app: FastifyInstance, root: string): void {
  const files = readWebFiles(root);
  const page = files.get('index.html');
  if (!page) {
    throw new Error(
      `the web page is missing: ${path.join(root, 'index.html')} does not exist (run npm run build)`,
    );
  }
  app.get('/', { schema: { hide: true } }, (_request, reply) => reply.redirect('/ui/', 302));
  app.get('/ui', { schema: { hide: true } }, (_request, reply) => reply.redirect('/ui/', 302));
  app.get('/ui/*', { schema: { hide: true } }, (request, reply) => {
    const wanted = (request.params as { '*': string })['*'];
    const file = files.get(wanted);
    // Assets are named by content hash: they may be kept; the page itself is asked for again.
    if (file && wanted.startsWith('assets/')) {
      return reply
        .header('cache-control', 'public, max-age=31536000, immutable')
        .type(file.type)
        .send(file.body);
    }
    if (file) return reply.header('cache-control', 'no-cache').type(file.type).send(file.body);
    if (wanted.startsWith('assets/')) {
      return reply.status(404).type('text/plain; charset=utf-8').send('not found');
    }
    return reply.header('cache-control', 'no-cache').type(page.type).send(page.body);
  });
}
