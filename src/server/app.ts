/**
 * The HTTP API of `berth server` (`/api/v1`): Fastify with TypeBox schemas, which validate every
 * request (unknown properties refused, never silently dropped) and make the OpenAPI document.
 * Errors have one shape ({code, message, hint}) and a stable code; an unexpected failure is a 500
 * with code INTERNAL and nothing of its internals. Time and ids are injected.
 */
import { randomBytes } from 'node:crypto';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { BerthError } from '../domain/errors.js';
import { validationMessage, type SchemaError } from './validation-message.js';
import { ulidGenerator } from '../domain/ulid.js';
import { ErrorBody } from '../api/schemas.js';
import { StoreConflict, type Store } from '../store/store.js';
import { databaseTrouble } from '../store/database-trouble.js';
import {
  FailedAttempts,
  bearerToken,
  hashToken,
  sameHash,
  sessionCookie,
  type Caller,
} from './auth.js';
import { SESSION_ROUTE, callerOfSession, registerSessionRoutes } from './routes/session.js';
import { registerWebPage, routeOf, securityHeaders } from './web.js';
import { registerLogDownload } from './routes/log-download.js';
import { registerPoolRoutes } from './routes/pools.js';
import { registerRunRoutes } from './routes/runs.js';
import { registerStackRoutes } from './routes/stacks.js';
import { registerTokenRoutes } from './routes/tokens.js';
import { registerWorkerRoutes } from './routes/worker.js';
import { registerWorkerAdminRoutes } from './routes/workers.js';
import { PoolSignals } from './pool-signals.js';
import { observeRuns, signalsRunFeed, type RunFeed } from './run-feed.js';
import { registerLogStreamRoute } from './routes/log-stream.js';
import type { SecretBox } from './secrets.js';
import type { StackVariable } from '../domain/git-source.js';
import type { BranchHead } from './commits.js';
import type { BlobStore } from './blob-store.js';
import { isTerminal } from '../domain/run-state.js';
import type { Run } from '../store/store.js';

export const API_VERSION = 'v1';
export const BODY_LIMIT = 1024 * 1024;

export interface ServerDeps {
  store: Store;
  secrets: SecretBox;
  /** Saved workspaces of tracked runs waiting for confirmation. */
  blobs: BlobStore;
  /** SHA-256 of an admin token kept outside the store (tests); the store's tokens work too. */
  adminTokenHash?: string;
  version: string;
  now?: () => Date;
  newId?: () => string;
  /**
   * The commit a run is bound to when none is given: the head of the stack's branch, read with
   * the stack's git credentials (its BERTH_GIT_* variables, opened).
   */
  resolveCommit?: (
    stack: { repository: string | null; branch: string | null; localDir: string | null },
    variables: StackVariable[],
  ) => Promise<BranchHead>;
  /** Failed authentications allowed per address per minute. */
  authFailureLimit?: number;
  /** How long a worker's hold on a run lasts without a heartbeat. */
  leaseMs?: number;
  /**
   * Who hears that a run changed (log stream followers). Default: a feed over `signals`, so it
   * reaches every server process when the signals are relayed (LISTEN/NOTIFY; see run-feed.ts).
   */
  runFeed?: RunFeed;
  /**
   * Bytes of one run's log the server stores at most (a worker that sends more is refused past
   * it); workers are told, and bound their logs to head and tail within it. Default 4 MiB.
   */
  logLimitBytes?: number;
  /** How long a log stream waits for a client that reads nothing before dropping it (60 s). */
  streamDrainTimeoutMs?: number;
  /** TLS: the server's certificate chain and key (PEM); without them the API is plain HTTP. */
  tls?: { cert: Buffer; key: Buffer };
  /** The built web page (dist/web); without it the server answers the API only. */
  webRoot?: string;
  /** Wake-ups, when they travel beyond this process (start.ts relays them over PostgreSQL). */
  signals?: PoolSignals;
  /** Lines for the operator (workers registering, addresses refused); default: none. */
  say?: (line: string) => void;
}

export const DEFAULT_LOG_LIMIT_BYTES = 4 * 1024 * 1024;

export type Api = FastifyInstance & { withTypeProvider: FastifyInstance['withTypeProvider'] };

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller | null;
  }
}

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const STATUS_OF_CONFLICT: Record<StoreConflict['code'], number> = {
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  RUN_TRANSITION_INVALID: 409,
  RUN_CHANGED: 409,
  LOG_GAP: 409,
  LOG_TOO_LARGE: 413,
  STACK_HAS_RUNS: 409,
  POOL_IN_USE: 409,
  TOKEN_LAST_ADMIN: 409,
  TOKEN_NAME_TAKEN: 409,
};

function errorAnswer(
  err: unknown,
  request?: { body?: unknown; query?: unknown; params?: unknown },
): { status: number; body: ErrorBody; log: boolean } {
  if (err instanceof ApiError) {
    return {
      status: err.statusCode,
      body: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) },
      log: false,
    };
  }
  if (err instanceof StoreConflict) {
    return {
      status: STATUS_OF_CONFLICT[err.code],
      body: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) },
      log: false,
    };
  }
  if (err instanceof BerthError && err.kind !== 'internal') {
    return {
      status: 400,
      body: { code: err.code, message: err.message, hint: err.hint },
      log: false,
    };
  }
  const e = err as {
    validation?: SchemaError[];
    validationContext?: string;
    code?: string;
    statusCode?: number;
    message?: string;
  };
  if (e.validation) {
    const context = e.validationContext ?? 'body';
    const input =
      context === 'querystring'
        ? request?.query
        : context === 'params'
          ? request?.params
          : request?.body;
    return {
      status: 400,
      body: {
        code: 'BAD_REQUEST',
        message:
          validationMessage(e.validation, context, input) ??
          e.message ??
          'the request does not match its schema',
        hint: 'See /api/v1/openapi.json for the accepted fields and formats.',
      },
      log: false,
    };
  }
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return {
      status: 413,
      body: {
        code: 'BODY_TOO_LARGE',
        message: `the request body is larger than ${BODY_LIMIT} bytes`,
      },
      log: false,
    };
  }
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return {
      status: 415,
      body: {
        code: 'UNSUPPORTED_MEDIA_TYPE',
        message: e.message ?? 'unsupported media type',
        hint: 'Send JSON with Content-Type: application/json.',
      },
      log: false,
    };
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    // Fastify's own refusals: a body that is not JSON, an empty JSON body, a bad header.
    return {
      status: e.statusCode,
      body: {
        code: e.statusCode === 400 ? 'BAD_JSON' : 'BAD_REQUEST',
        message: e.message ?? 'bad request',
      },
      log: false,
    };
  }
  const database = databaseTrouble(err);
  if (database) {
    return {
      status: 503,
      body: {
        code: 'DATABASE_UNAVAILABLE',
        // The driver's words (the database's address, its user) are for the operator's log:
        // this answer may go to a caller that has not even authenticated.
        message: `the berth server cannot use its database now (${database.kind}); nothing was changed`,
        hint: 'Try again shortly; if it lasts, the server operator checks its PostgreSQL database.',
      },
      log: true,
    };
  }
  if (isStorageFull(err)) {
    return {
      status: 507,
      body: {
        code: 'SERVER_STORAGE_FULL',
        message: `the berth server has no space left to store this (${e.code}); nothing was stored`,
        hint: "The server's operator frees space where its database and data directory are (or gives them more); then try again.",
      },
      log: true,
    };
  }
  return {
    status: 500,
    body: { code: 'INTERNAL', message: 'the server failed to answer; its log has the details' },
    log: true,
  };
}

/**
 * What a full disk or database is called by the file system, SQLite and PostgreSQL (disk_full):
 * the operator's to fix, not a bug, and the client's to try again later.
 */
const STORAGE_FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']);

/** Whether `err` says the disk or the database has no room (STORAGE_FULL_CODES). */
export function isStorageFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && STORAGE_FULL_CODES.has(code);
}

export type BerthServer = FastifyInstance & {
  notifyPool(poolId: string): void;
  /** Workers waiting in a long poll for a run of the pool (for tests and status). */
  waitingWorkers(poolId: string): number;
  /** Log batches of the run waiting for the batch before them (for tests and status). */
  waitingLogBatches(runId: string): number;
};

export async function buildServer(deps: ServerDeps): Promise<BerthServer> {
  const now = deps.now ?? (() => new Date());
  const newId =
    deps.newId ??
    ulidGenerator(
      () => now().getTime(),
      (n) => randomBytes(n),
    );
  const app = Fastify({
    ...(deps.tls ? { https: { cert: deps.tls.cert, key: deps.tls.key } } : {}),
    logger: false,
    bodyLimit: BODY_LIMIT,
    ajv: {
      customOptions: {
        removeAdditional: false,
        allErrors: false,
        coerceTypes: 'array',
        // Errors carry the refused value's schema: its description words the message.
        verbose: true,
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // The API speaks JSON only: a text body is refused (415), not parsed as a string.
  app.removeContentTypeParser('text/plain');
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'berth API',
        version: API_VERSION,
        description: 'Stacks, runs, worker pools and workers of a berth server.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearer: [] }],
    },
  });

  const say = deps.say ?? (() => undefined);
  const failures = new FailedAttempts(deps.authFailureLimit ?? 20, 60_000, () => now().getTime());
  app.decorateRequest('caller', null);

  /** The caller a token stands for: the admin, an API token's owner, or a pool; null: none. */
  const callerOfToken = async (token: string): Promise<Caller | null> => {
    const hash = hashToken(token);
    if (deps.adminTokenHash && sameHash(hash, deps.adminTokenHash))
      return { kind: 'admin', id: 'admin' };
    const api = await deps.store.findTokenByHash(hash);
    if (api) return { kind: api.role === 'admin' ? 'admin' : 'user', id: api.id };
    const pool = await deps.store.findPoolByTokenHash(hash);
    return pool ? { kind: 'pool', poolId: pool.id } : null;
  };
  /** Counts a failed authentication; past the limit the address gets 429 instead. */
  const refuseToken = (address: string): ApiError => {
    if (failures.blocked(address)) {
      return new ApiError(
        429,
        'TOO_MANY_FAILED_LOGINS',
        'too many requests with a wrong token from this address',
        `Wait ${failures.retryAfter(address)} s and use a valid token.`,
      );
    }
    failures.record(address);
    if (failures.blocked(address)) {
      say(
        `${deps.authFailureLimit ?? 20} requests with a wrong token from ${address} within a minute: it is refused (429) for ${failures.retryAfter(address)} s`,
      );
    }
    return new ApiError(
      401,
      'UNAUTHENTICATED',
      'the token is not valid',
      'Use the admin token, an API token, or log in again with `berth login`.',
    );
  };

  app.addHook('onRequest', async (request: FastifyRequest) => {
    const route = routeOf(request);
    // The web page's own files are public; what they show comes from the API below.
    if (!route.startsWith('/api/')) return;
    if (
      route === `/api/${API_VERSION}/health` ||
      route === `/api/${API_VERSION}/openapi.json` ||
      (route === SESSION_ROUTE && request.method === 'POST')
    )
      return;
    const token = bearerToken(request.headers.authorization);
    if (!token) {
      const session = sessionCookie(request.headers.cookie);
      if (session) {
        request.caller = await callerOfSession(deps.store, session, request, now());
        return;
      }
      throw new ApiError(
        401,
        'UNAUTHENTICATED',
        'this endpoint needs a token',
        'Send Authorization: Bearer TOKEN (the admin token printed on first start, an API token, or a pool token for workers).',
      );
    }
    // Only failures count, and only against further failures: a valid token always works, so a
    // stale client behind the same proxy cannot lock everyone else out.
    const caller = await callerOfToken(token);
    if (!caller) throw refuseToken(request.ip);
    request.caller = caller;
  });

  app.setErrorHandler((err, request, reply) => {
    const answer = errorAnswer(err, request);
    if (answer.status === 503 && answer.body.code === 'DATABASE_UNAVAILABLE') {
      console.error(
        `berth server: ${request.method} ${request.url} failed: the database cannot be used now (${databaseTrouble(err)?.cause ?? ''})`,
      );
    } else if (answer.status === 507) {
      // The operator's to fix, in one line: where the trace would add nothing.
      console.error(
        `berth server: ${request.method} ${request.url} failed: no space left (${(err as Error).message}); free space where the database and the data directory are`,
      );
    } else if (answer.log) {
      console.error(`berth server: ${request.method} ${request.url} failed:`, err);
    }
    void reply.status(answer.status).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({
      code: 'NOT_FOUND',
      message: `no endpoint ${request.method} ${request.url.split('?')[0]}`,
    });
  });

  const signals = deps.signals ?? new PoolSignals();
  const runFeed = deps.runFeed ?? signalsRunFeed(signals);
  // Aborted as the server starts closing: long polls and log streams end at once, so a server
  // with followers and waiting workers still exits promptly (they reconnect elsewhere or later).
  const closing = new AbortController();
  app.addHook('preClose', (done) => {
    closing.abort();
    done();
  });
  const context: ServerContext = {
    ...deps,
    store: observeRuns(deps.store, runFeed),
    now,
    newId,
    leaseMs: deps.leaseMs ?? 60_000,
    logLimitBytes: deps.logLimitBytes ?? DEFAULT_LOG_LIMIT_BYTES,
    signals,
    runFeed,
    closing: closing.signal,
    logBatchesWaiting: new Map(),
    callerOfToken,
    refuseToken,
  };
  securityHeaders(app);
  if (deps.webRoot) registerWebPage(app, deps.webRoot);
  await app.register(
    (api, _options, done) => {
      api.get(
        '/health',
        {
          schema: {
            security: [],
            response: {
              200: {
                type: 'object',
                properties: { status: { type: 'string' }, version: { type: 'string' } },
                required: ['status', 'version'],
                additionalProperties: false,
              },
            },
          },
        },
        () => ({ status: 'ok', version: deps.version }),
      );
      registerPoolRoutes(api, context);
      registerStackRoutes(api, context);
      registerRunRoutes(api, context);
      registerLogStreamRoute(api, context);
      registerWorkerRoutes(api, context);
      registerWorkerAdminRoutes(api, context);
      registerSessionRoutes(api, context);
      registerTokenRoutes(api, context);
      registerLogDownload(api, context);
      api.get('/openapi.json', { schema: { hide: true } }, () => openApiDocument(app));
      done();
    },
    { prefix: `/api/${API_VERSION}` },
  );
  await app.ready();
  return Object.assign(app, {
    notifyPool: (poolId: string) => context.signals.notify(poolId),
    waitingWorkers: (poolId: string) => context.signals.waiters(poolId),
    waitingLogBatches: (runId: string) => context.logBatchesWaiting.get(runId) ?? 0,
  });
}

/** The OpenAPI document made from the routes' schemas (committed as docs/api/openapi.json). */
export function openApiDocument(app: FastifyInstance): unknown {
  return (app as unknown as { swagger(): unknown }).swagger();
}

export type ServerContext = ServerDeps & {
  now: () => Date;
  newId: () => string;
  leaseMs: number;
  logLimitBytes: number;
  signals: PoolSignals;
  runFeed: RunFeed;
  /** Aborted when the server starts closing: every wait and stream ends. */
  closing: AbortSignal;
  /** How many log batches of each run wait for the batch before them (routes/worker.ts). */
  logBatchesWaiting: Map<string, number>;
  /** The caller a token stands for (null: none): the same check as every request's. */
  callerOfToken: (token: string) => Promise<Caller | null>;
  /** A failed authentication from that address, counted: the error to throw. */
  refuseToken: (address: string) => ApiError;
};

/** Only people (admin and API tokens) may call this; pool tokens are for workers. */
/** A caller with an admin or API token (never a pool token). */
export type Person = Exclude<Caller, { kind: 'pool' }>;

export function requirePerson(request: FastifyRequest): Person {
  const caller = request.caller;
  if (!caller || caller.kind === 'pool') {
    throw new ApiError(
      403,
      'FORBIDDEN',
      'a pool token may only call the worker endpoints',
      'Use the admin token or an API token.',
    );
  }
  return caller;
}

export function requireAdmin(request: FastifyRequest): Person {
  const caller = requirePerson(request);
  if (caller.kind !== 'admin') {
    throw new ApiError(
      403,
      'FORBIDDEN',
      'only an admin token may do this',
      'Use an admin token: the admin token, or one an admin made with `berth token create NAME --role admin`.',
    );
  }
  return caller;
}

/** A run that has ended needs no saved workspace any more: its blob goes (nothing leaks on disk). */
export async function forgetWorkspaceIfEnded(
  ctx: Pick<ServerContext, 'blobs'>,
  run: Pick<Run, 'id' | 'state'>,
): Promise<void> {
  if (isTerminal(run.state)) await ctx.blobs.delete(run.id);
}

export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
};
