/**
 * The worker's side of the protocol with the server, as one small interface (the transport sits
 * behind it: HTTP below; tests may drive a worker through another implementation):
 *
 *   register   announce this worker in its pool (idempotent: the same id registers again)
 *   lease      wait up to waitMs for a run of the pool; null when none came
 *   heartbeat  renew the leases of the runs held; the answer names the runs to stop
 *   deregister say this worker leaves (a clean exit): it shows OFFLINE
 *   report     move a held run to a state (with what was learnt: image, plan, reason)
 *   log        store a batch of a run's masked output under sequence numbers (resendable)
 *   remask     mask values learnt mid-run (::add-mask) in the run's already stored log
 *   uploadWorkspace    the sealed workspace of a plan waiting for confirmation, to the server
 *   downloadWorkspace  that workspace, for the apply this worker leased (maybe another worker's plan)
 *
 * Every call may fail on the network; the worker retries what is idempotent (heartbeat, log)
 * and never loses or doubles a log chunk (the server keeps each sequence number once).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Static } from 'typebox';
import { noAnswer } from '../domain/no-answer.js';
import { BerthError } from '../domain/errors.js';
import {
  parseApiAnswer,
  parseServerAddress,
  readAnswer,
  unexpectedAnswer,
  type ServerAnswer,
} from '../domain/server-address.js';
import { LogRefused } from './log-shipper.js';
import type {
  Assignment,
  HeartbeatAnswer,
  StateReport,
  WorkerRegistered,
  WorkerRegistration,
} from '../api/schemas.js';

export type AssignmentBody = Static<typeof Assignment>;
export type Registration = Static<typeof WorkerRegistration>;
export type Registered = Static<typeof WorkerRegistered>;
export type Report = Omit<Static<typeof StateReport>, 'workerId'>;
export type Heartbeat = Static<typeof HeartbeatAnswer>;

export interface WorkerProtocol {
  register(info: Registration): Promise<Registered>;
  lease(workerId: string, waitMs: number, signal?: AbortSignal): Promise<AssignmentBody | null>;
  /** `signal`: a heartbeat that takes longer is given up (and tried again, see Worker.beat). */
  heartbeat(workerId: string, runs: string[], signal?: AbortSignal): Promise<Heartbeat>;
  /** This worker leaves (a clean exit): the server shows it OFFLINE. */
  /** `signal` (here and below): the worker gives the call up (told to stop at once). */
  deregister(workerId: string, signal?: AbortSignal): Promise<void>;
  /** Resolves with whether the run has been asked to stop (a cancel while its job runs). */
  report(
    workerId: string,
    runId: string,
    report: Report,
    signal?: AbortSignal,
  ): Promise<{ stopRequested: boolean }>;
  log(
    workerId: string,
    runId: string,
    firstSeq: number,
    texts: string[],
    signal?: AbortSignal,
  ): Promise<number>;
  remask(workerId: string, runId: string, values: string[], signal?: AbortSignal): Promise<void>;
  uploadWorkspace(
    workerId: string,
    runId: string,
    file: string,
    signal?: AbortSignal,
  ): Promise<void>;
  downloadWorkspace(
    workerId: string,
    runId: string,
    file: string,
    signal?: AbortSignal,
  ): Promise<void>;
}

/** A saved workspace may be large: its transfer gets longer than an API call. */
const WORKSPACE_TIMEOUT_MS = 60 * 60_000;

export class ProtocolError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The answer, when it was not berth's API (a web page, a proxy's page). */
    readonly notTheApi?: ServerAnswer,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The protocol over the server's HTTP API, with the pool token. */
export class HttpWorkerProtocol implements WorkerProtocol {
  /** The server's base address, read once (the API's own prefix, `/api/v1`, is added here). */
  private readonly root: string;

  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    /** fetch, verifying the server against a custom CA when one was given (net/tls-files.ts). */
    private readonly fetchImpl: typeof fetch = fetch,
  ) {
    this.root = parseServerAddress(baseUrl, '--server');
  }

  /**
   * A request that got no answer, as a berth error naming the server and the network's reason
   * (a certificate this worker does not trust is its own error): never "a bug in berth".
   */
  private unreachable(err: unknown): BerthError {
    if (err instanceof BerthError || (err as Error).name === 'AbortError') return err as BerthError;
    const { kind, message } = noAnswer(this.baseUrl, err, 'worker');
    if (kind === 'not-trusted')
      return new BerthError('BERTH_SERVER_NOT_TRUSTED', message, { cause: err });
    return new BerthError('BERTH_SERVER_UNREACHABLE', message, {
      cause: err,
      hint: 'Check the URL given with --server (or BERTH_SERVER): http:// or https:// as the server listens, its host and port; and that berth server runs and is reachable from here.',
    });
  }

  private async call<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T | null> {
    const res = await this.fetchImpl(`${this.root}/api/v1${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: signal
        ? AbortSignal.any([signal, AbortSignal.timeout(90_000)])
        : AbortSignal.timeout(90_000),
    }).catch((err: unknown) => {
      throw this.unreachable(err);
    });
    if (res.status === 204) return null;
    const answer = await readAnswer(res);
    const parsed = parseApiAnswer(answer);
    if (!res.ok)
      throw refusal(path, res.status, answer.text, this.baseUrl, parsed.ok ? undefined : answer);
    // Not berth's JSON (a web page at that address): said as such, never "a bug in berth".
    if (!parsed.ok) throw unexpectedAnswer(this.baseUrl, answer);
    return parsed.body as T;
  }

  private workspaceUrl(workerId: string, runId: string): string {
    return `${this.root}/api/v1/worker/runs/${runId}/workspace?workerId=${workerId}`;
  }

  private signal(signal?: AbortSignal): AbortSignal {
    const timeout = AbortSignal.timeout(WORKSPACE_TIMEOUT_MS);
    return signal ? AbortSignal.any([signal, timeout]) : timeout;
  }

  async uploadWorkspace(
    workerId: string,
    runId: string,
    file: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const { size } = await stat(file);
    // Streamed from the file: a workspace is never held whole in memory. Through fetchImpl, as
    // every call: it trusts the custom CA given (the built-in fetch refused such a server).
    const res = await this.fetchImpl(this.workspaceUrl(workerId, runId), {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${this.token}`,
        'content-type': 'application/octet-stream',
        'content-length': String(size),
      },
      body: Readable.toWeb(createReadStream(file)) as ReadableStream,
      duplex: 'half',
      signal: this.signal(signal),
    }).catch((err: unknown) => {
      throw this.unreachable(err);
    });
    const { text } = await readAnswer(res);
    if (!res.ok) throw refusal(`/worker/runs/${runId}/workspace`, res.status, text, this.baseUrl);
  }

  async downloadWorkspace(
    workerId: string,
    runId: string,
    file: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const res = await this.fetchImpl(this.workspaceUrl(workerId, runId), {
      headers: { authorization: `Bearer ${this.token}` },
      signal: this.signal(signal),
    }).catch((err: unknown) => {
      throw this.unreachable(err);
    });
    if (!res.ok || !res.body)
      throw refusal(
        `/worker/runs/${runId}/workspace`,
        res.status,
        (await readAnswer(res)).text,
        this.baseUrl,
      );
    await pipeline(Readable.fromWeb(res.body), createWriteStream(file, { mode: 0o600 }));
  }

  async register(info: Registration): Promise<Registered> {
    return (await this.call<Registered>('/worker/register', info)) as Registered;
  }

  lease(workerId: string, waitMs: number, signal?: AbortSignal): Promise<AssignmentBody | null> {
    return this.call<AssignmentBody>('/worker/lease', { workerId, waitMs }, signal);
  }

  async heartbeat(workerId: string, runs: string[], signal?: AbortSignal): Promise<Heartbeat> {
    return (await this.call<Heartbeat>(
      '/worker/heartbeat',
      { workerId, runs },
      signal,
    )) as Heartbeat;
  }

  async deregister(workerId: string, signal?: AbortSignal): Promise<void> {
    await this.call('/worker/deregister', { workerId }, signal);
  }

  async report(
    workerId: string,
    runId: string,
    report: Report,
    signal?: AbortSignal,
  ): Promise<{ stopRequested: boolean }> {
    const run = await this.call<{ stopRequested?: unknown }>(
      `/worker/runs/${runId}/state`,
      { workerId, ...report },
      signal,
    );
    return { stopRequested: run?.stopRequested !== null && run?.stopRequested !== undefined };
  }

  async log(
    workerId: string,
    runId: string,
    firstSeq: number,
    texts: string[],
    signal?: AbortSignal,
  ): Promise<number> {
    const answer = await refusalAsFinal(
      this.call<{ next: number }>(
        `/worker/runs/${runId}/logs`,
        { workerId, firstSeq, texts },
        signal,
      ),
    );
    return answer?.next ?? firstSeq + texts.length;
  }

  async remask(
    workerId: string,
    runId: string,
    values: string[],
    signal?: AbortSignal,
  ): Promise<void> {
    await refusalAsFinal(this.call(`/worker/runs/${runId}/masks`, { workerId, values }, signal));
  }
}

/**
 * A refusal (4xx) stays a refusal however often the call is made: LogRefused stops the shipper.
 * Except LOG_GAP: a batch that overtook the one before it (batches of a run travel side by side)
 * and found it still missing after waiting on the server; sent again, it is taken.
 */
async function refusalAsFinal<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (
      err instanceof ProtocolError &&
      err.status >= 400 &&
      err.status < 500 &&
      err.code !== 'LOG_GAP'
    )
      throw new LogRefused(err.message, { cause: err });
    throw err;
  }
}

/**
 * A refusal of the server as a ProtocolError with its stable code. A server error names the
 * server: a 503 is often not berth's answer but a server closing (or a proxy before it).
 */
function refusal(
  path: string,
  status: number,
  text: string,
  server: string,
  notTheApi?: ServerAnswer,
): ProtocolError {
  let code = 'HTTP_ERROR';
  let message = text.slice(0, 500);
  try {
    const parsed = JSON.parse(text) as { code?: string; message?: string };
    code = parsed.code ?? code;
    message = parsed.message ?? message;
  } catch {
    // Not our server's JSON: keep the text.
  }
  const where = status >= 500 ? `the berth server at ${server} answered ` : '';
  return new ProtocolError(
    status,
    code,
    `${where}${path}: ${status} ${code}: ${message}`,
    notTheApi,
  );
}

/** What a worker is told when its pool token is refused: where the right one comes from. */
export const POOL_TOKEN_FIX =
  "Start berth worker again with BERTH_POOL_TOKEN set to the pool's current token: the one `berth pool create` showed, or the newest `berth pool rotate-token POOL` showed (a rotation ends the old token at once).";

/** The server does not take (or no longer takes) the worker's pool token: 401 on any worker call. */
export function isTokenRejection(err: unknown): boolean {
  const refusal = err instanceof LogRefused ? err.cause : err;
  return refusal instanceof ProtocolError && refusal.status === 401;
}

/**
 * A refusal of the registration as a berth error with the fix for it (a wrong token, a person's
 * token, a URL that is not the server's); anything else is kept (an unreachable server is already
 * a berth error).
 */
export function registrationRefused(server: string, err: unknown): unknown {
  if (!(err instanceof ProtocolError)) return err;
  // Something else answers at that address (a web page, a proxy's page).
  if (err.notTheApi) return unexpectedAnswer(server, err.notTheApi);
  const said = err.message.replace(/^\/worker\/register: /, '');
  if (err.status === 401)
    return new BerthError(
      'BERTH_SERVER_REFUSED',
      `the berth server at ${server} does not accept this worker's pool token (${said})`,
      { cause: err, hint: POOL_TOKEN_FIX },
    );
  if (err.status === 403)
    return new BerthError(
      'BERTH_SERVER_REFUSED',
      `the berth server at ${server} refused BERTH_POOL_TOKEN: it is not a pool token (${said})`,
      {
        cause: err,
        hint: "berth worker takes a pool's token (berth_pool_…), not the admin token or an API token: set BERTH_POOL_TOKEN to the token `berth pool create POOL` showed (`berth pool rotate-token POOL` makes a new one).",
      },
    );
  if (err.status === 404 && err.code === 'NOT_FOUND')
    return new BerthError(
      'BERTH_SERVER_REFUSED',
      `${server} answered but is not the address of a berth server's API (${said})`,
      {
        cause: err,
        hint: 'Give --server (or BERTH_SERVER) the address berth server printed (http(s)://HOST:PORT), without a path.',
      },
    );
  return new BerthError(
    'BERTH_SERVER_REFUSED',
    `the berth server at ${server} refused to register this worker (${said})`,
    {
      cause: err,
    },
  );
}
