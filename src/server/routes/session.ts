/**
 * Browser sessions for the web page: sign in with a token (admin or API, never a pool's) for a
 * session cookie, see who is signed in (and the CSRF token the page sends back), sign out.
 * Requests with the cookie pass the same hook as bearer tokens (app.ts), so every /api/v1 route
 * accepts them; those that change something must carry the CSRF header too.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SessionOutput, SignInInput } from '../../api/schemas.js';
import type { Store } from '../../store/store.js';
import {
  CSRF_HEADER,
  bearerToken,
  SESSION_HOURS,
  csrfMatches,
  csrfTokenOf,
  hashToken,
  isSafeMethod,
  newSessionValue,
  sessionCookie,
  sessionSetCookie,
  type Caller,
} from '../auth.js';
import { ApiError, errorResponses, requirePerson, type ServerContext } from '../app.js';

/** Written out, not built from app.ts's API_VERSION: app.ts imports this module. */
export const SESSION_ROUTE = '/api/v1/session';

/**
 * The caller of a request made with a session cookie. A session that has ended is 401; a request
 * that changes something without the session's CSRF header is 403 (CSRF_TOKEN_MISSING or
 * CSRF_TOKEN_INVALID) and changes nothing. Session values are 256 random bits: unlike tokens,
 * unknown ones are not counted as guesses (a page left open after its session ended would
 * otherwise lock its address out).
 */
export async function callerOfSession(
  store: Store,
  value: string,
  request: FastifyRequest,
  at: Date,
): Promise<Caller> {
  const session = await store.findSession(hashToken(value), at);
  if (!session) {
    throw new ApiError(
      401,
      'UNAUTHENTICATED',
      'the session has ended (signed out, or older than ' + SESSION_HOURS + ' hours)',
      'Sign in again with the admin token or an API token.',
    );
  }
  if (!isSafeMethod(request.method)) {
    const presented = request.headers[CSRF_HEADER];
    const header = Array.isArray(presented) ? undefined : presented;
    if (!header) {
      throw new ApiError(
        403,
        'CSRF_TOKEN_MISSING',
        `a ${request.method} with a session cookie needs the ${CSRF_HEADER} header`,
        `Send the csrfToken of GET ${SESSION_ROUTE} as ${CSRF_HEADER}, or use Authorization: Bearer TOKEN.`,
      );
    }
    if (!csrfMatches(value, header)) {
      throw new ApiError(
        403,
        'CSRF_TOKEN_INVALID',
        `the ${CSRF_HEADER} header does not belong to this session`,
        `Read the csrfToken again from GET ${SESSION_ROUTE} (it changes with each sign-in).`,
      );
    }
  }
  return { kind: session.callerKind, id: session.callerId };
}

/** Whether the request reached us over TLS: only then may the cookie be marked Secure. */
const overTls = (request: FastifyRequest): boolean => request.protocol === 'https';

export function registerSessionRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/session',
    {
      schema: {
        security: [],
        body: SignInInput,
        response: { 201: SessionOutput, ...errorResponses },
      },
    },
    async (request, reply) => {
      const caller = await ctx.callerOfToken(request.body.token);
      if (!caller) throw ctx.refuseToken(request.ip);
      if (caller.kind === 'pool') {
        throw new ApiError(
          403,
          'FORBIDDEN',
          'a pool token cannot sign in: it is for workers only',
          'Sign in with the admin token or an API token.',
        );
      }
      const value = newSessionValue();
      const at = ctx.now();
      const expiresAt = new Date(at.getTime() + SESSION_HOURS * 3600_000).toISOString();
      await ctx.store.createSession(
        hashToken(value),
        { callerKind: caller.kind, callerId: caller.id, createdAt: at.toISOString(), expiresAt },
        at,
      );
      void reply.header('set-cookie', sessionSetCookie(value, overTls(request)));
      return reply.status(201).send({ caller, csrfToken: csrfTokenOf(value), expiresAt });
    },
  );

  api.get(
    '/session',
    { schema: { response: { 200: SessionOutput, ...errorResponses } } },
    async (request) => {
      const caller = requirePerson(request);
      const value = bearerless(request);
      const session = value ? await ctx.store.findSession(hashToken(value), ctx.now()) : null;
      return {
        caller: { kind: caller.kind, id: caller.id },
        csrfToken: value ? csrfTokenOf(value) : null,
        expiresAt: session?.expiresAt ?? null,
      };
    },
  );

  api.delete(
    '/session',
    { schema: { response: { 204: { type: 'null' }, ...errorResponses } } },
    async (request, reply) => {
      requirePerson(request);
      const value = bearerless(request);
      if (!value) {
        throw new ApiError(
          400,
          'NO_SESSION',
          'this request has no session cookie to end',
          'Sign-out is for the web page; a bearer token stays valid until it is rotated.',
        );
      }
      await ctx.store.deleteSession(hashToken(value));
      void reply.header('set-cookie', sessionSetCookie(null, overTls(request)));
      return reply.status(204).send(null);
    },
  );
}

/** The session cookie of a request authenticated by it (not by a bearer token). */
function bearerless(request: FastifyRequest): string | null {
  return bearerToken(request.headers.authorization) ? null : sessionCookie(request.headers.cookie);
}
