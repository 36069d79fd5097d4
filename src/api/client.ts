/**
 * The one typed client of the API, for the command line and the web page: every call's types
 * come from the same schemas the server validates with. Errors keep the server's code and hint.
 * The command line sends a bearer token; the web page (token null) is signed in by its session
 * cookie, which the browser sends itself, and adds the session's CSRF token to every change.
 */
import type { Static } from 'typebox';
import type {
  LogOutput,
  PoolInput,
  PoolPatchInput,
  PoolOutput,
  PoolWithToken,
  RunOutput,
  SessionOutput,
  StackInput,
  StackOutput,
  StackPatchInput,
  TokenInput,
  TokenOutput,
  TokenWithToken,
  TriggerInput,
  WorkerOutput,
} from './schemas.js';
import { noAnswer } from '../domain/no-answer.js';
import { isTerminal } from '../domain/run-state.js';
import { formatDuration } from '../domain/units.js';
import {
  parseApiAnswer,
  readAnswer,
  unexpectedAnswer,
  type ServerAnswer,
} from '../domain/server-address.js';

export type Run = Static<typeof RunOutput>;
export type Stack = Static<typeof StackOutput>;
export type Pool = Static<typeof PoolOutput>;
export type Worker = Static<typeof WorkerOutput>;
export type ApiToken = Static<typeof TokenOutput>;
export type Log = Static<typeof LogOutput>;
export type LogChunk = Log['chunks'][number];

/** How long a call waits for its answer's headers. */
const CALL_TIMEOUT_MS = 60_000;

/** What a follower hears: output chunks in order (each once) and the run on every change. */
export interface FollowHandlers {
  log(chunk: LogChunk): void;
  run(run: Run): void;
  /**
   * The stream was lost after the run had ended (the server went away before the stream's end):
   * the follow ends there, and this says why (the log may lack its last chunks).
   */
  lost?(why: string): void;
  /**
   * The stream was cut (or its server does not answer) while the run goes on: said before each
   * new try, and once when a try brings the stream back (`back`).
   */
  retrying?(message: string, back: boolean): void;
}

export interface FollowOptions {
  /** Start after this chunk (0: from the start). */
  after?: number;
  /** Stop following when a run event satisfies this (e.g. it waits for confirmation). */
  stopWhen?: (run: Run) => boolean;
  /** Give up after this many connection attempts in a row that brought nothing new. */
  attempts?: number;
  retryDelayMs?: number;
  /** A connection silent this long is taken as cut (the server says something every 15 s). */
  idleMs?: number;
  /** A stream whose server has not answered its request this long is taken as cut. */
  connectMs?: number;
  signal?: AbortSignal;
}

/** One server-sent event. */
interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

/**
 * Parses a text/event-stream body into events as it arrives (the WHATWG rules berth's server
 * needs: `event`, `data` lines joined by newlines, `id`, comments ignored, CRLF or LF).
 */
async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event = { event: '', data: [] as string[], id: null as string | null };
  for await (const bytes of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(bytes, { stream: true });
    for (let end = buffer.search(/\r?\n/); end !== -1; end = buffer.search(/\r?\n/)) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer[end] === '\r' ? 2 : 1));
      if (line === '') {
        if (event.data.length > 0 || event.event !== '')
          yield { event: event.event || 'message', data: event.data.join('\n'), id: event.id };
        event = { event: '', data: [], id: null };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event.event = value;
      else if (field === 'data') event.data.push(value);
      else if (field === 'id') event.id = value;
    }
  }
}
export type Session = Static<typeof SessionOutput>;

/** The header a cookie-signed-in page sends its CSRF token in (the server checks it). */
export const CSRF_HEADER = 'x-berth-csrf';

export class ApiClientError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint: string | undefined,
  ) {
    super(message);
    this.name = 'ApiClientError';
  }
}

export class ApiClient {
  /** The web page's CSRF token, once signed in (sent with every call that changes something). */
  csrfToken: string | null = null;
  /** Said once when a call's answer takes longer than `slowAnswerMs` (the command line's notice). */
  onSlowAnswer: ((message: string) => void) | null = null;
  slowAnswerMs = 5_000;

  constructor(
    readonly baseUrl: string,
    private readonly token: string | null,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  /** The URL of an API path (the web page links the stored log's download with it). */
  url(path: string): string {
    return `${this.baseUrl.replace(/\/+$/, '')}/api/v1${path}`;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    const say = this.onSlowAnswer;
    const slow = say
      ? setTimeout(
          () =>
            say(
              `no answer yet from the berth server at ${this.baseUrl} after ${formatDuration(this.slowAnswerMs)} (${method} ${path}); waiting up to ${formatDuration(CALL_TIMEOUT_MS)} in all`,
            ),
          this.slowAnswerMs,
        )
      : undefined;
    try {
      res = await this.fetchImpl(this.url(path), {
        method,
        headers: {
          ...(this.token === null ? {} : { authorization: `Bearer ${this.token}` }),
          ...(this.csrfToken === null || method === 'GET' ? {} : { [CSRF_HEADER]: this.csrfToken }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      });
    } catch (err) {
      throw unreachable(this.baseUrl, err);
    } finally {
      clearTimeout(slow);
    }
    const answer = await readAnswer(res);
    const parsed = parseApiAnswer(answer);
    if (!parsed.ok) throw notTheApi(this.baseUrl, answer);
    if (!res.ok) {
      const error = (parsed.body ?? {}) as { code?: string; message?: string; hint?: string };
      throw new ApiClientError(
        res.status,
        error.code ?? `HTTP_${res.status}`,
        error.message ?? answer.text,
        error.hint,
      );
    }
    return parsed.body as T;
  }

  /** Signs the web page in: the answer sets the session cookie. */
  signIn = async (token: string): Promise<Session> => {
    const session = await this.call<Session>('POST', '/session', { token });
    this.csrfToken = session.csrfToken;
    return session;
  };
  /** Who is signed in (and, for a cookie, its CSRF token again after a reload). */
  session = async (): Promise<Session> => {
    const session = await this.call<Session>('GET', '/session');
    this.csrfToken = session.csrfToken;
    return session;
  };
  signOut = async (): Promise<void> => {
    await this.call('DELETE', '/session');
    this.csrfToken = null;
  };
  listStacks = async (filter: { pool?: string } = {}): Promise<Stack[]> =>
    (
      await this.call<{ stacks: Stack[] }>(
        'GET',
        filter.pool !== undefined ? `/stacks?pool=${encodeURIComponent(filter.pool)}` : '/stacks',
      )
    ).stacks;
  getStack = (id: string): Promise<Stack> => this.call('GET', `/stacks/${encodeURIComponent(id)}`);
  createStack = (input: Static<typeof StackInput>): Promise<Stack> =>
    this.call('POST', '/stacks', input);
  updateStack = (id: string, patch: Static<typeof StackPatchInput>): Promise<Stack> =>
    this.call('PATCH', `/stacks/${encodeURIComponent(id)}`, patch);
  deleteStack = (id: string): Promise<void> =>
    this.call('DELETE', `/stacks/${encodeURIComponent(id)}`);
  setVariable = (id: string, name: string, value: string, secret: boolean): Promise<Stack> =>
    this.call('PUT', `/stacks/${encodeURIComponent(id)}/env/${encodeURIComponent(name)}`, {
      value,
      secret,
    });
  unsetVariable = (id: string, name: string): Promise<Stack> =>
    this.call('DELETE', `/stacks/${encodeURIComponent(id)}/env/${encodeURIComponent(name)}`);
  trigger = (id: string, input: Static<typeof TriggerInput>): Promise<Run> =>
    this.call('POST', `/stacks/${encodeURIComponent(id)}/runs`, input);
  listRuns = async (
    filter: { stack?: string; limit?: number; before?: string } = {},
  ): Promise<Run[]> => {
    const query = new URLSearchParams();
    if (filter.stack) query.set('stack', filter.stack);
    if (filter.limit) query.set('limit', String(filter.limit));
    if (filter.before) query.set('before', filter.before);
    return (
      await this.call<{ runs: Run[] }>('GET', `/runs${query.size ? `?${query.toString()}` : ''}`)
    ).runs;
  };
  getRun = (id: string): Promise<Run> => this.call('GET', `/runs/${encodeURIComponent(id)}`);
  /**
   * Follows a run's log and states over server-sent events until the run ends (or `stopWhen`).
   * A cut connection is resumed with Last-Event-ID, so every chunk is handed on exactly once and
   * in order; only `attempts` reconnections in a row that bring nothing new make it give up.
   */
  followLogs = async (
    id: string,
    handlers: FollowHandlers,
    options: FollowOptions = {},
  ): Promise<void> => {
    let last = options.after ?? 0;
    let failures = 0;
    const attempts = options.attempts ?? 10;
    // The run's end, once the stream has said it: a lost stream is then not worth a minute of
    // tries (only the last chunks can be missing, and the exit code is known).
    let ended: Run | null = null;
    const noting: FollowHandlers = {
      log: (chunk) => handlers.log(chunk),
      run: (run) => {
        if (isTerminal(run.state)) ended = run;
        handlers.run(run);
      },
    };
    // Cut, and not yet back: the first sign of the stream again is said once.
    let cut = false;
    let opened = false;
    const back = (): void => {
      opened = true;
      if (!cut) return;
      cut = false;
      handlers.retrying?.(`the log stream of run ${id} is back`, true);
    };
    for (;;) {
      const progress = last;
      const outcome = await this.followOnce(
        id,
        last,
        noting,
        options,
        (seq) => {
          last = seq;
        },
        back,
      ).catch((err: unknown) => {
        if (err instanceof ApiClientError && err.status >= 400 && err.status < 500) throw err;
        // Not berth's answer, and no failing proxy's either (a web page): trying again will not help.
        if (err instanceof ApiClientError && err.code === ANSWER_UNEXPECTED && err.status < 500)
          throw err;
        if (options.signal?.aborted) throw err;
        return { done: false, cause: err };
      });
      if (outcome.done) return;
      failures = last > progress ? 1 : failures + 1;
      const cause = (outcome as { cause?: unknown }).cause;
      const why = cause instanceof Error ? cause.message : 'the server closed it';
      if (ended !== null && failures >= Math.min(2, attempts)) {
        handlers.lost?.(
          `the server stopped answering after run ${id} ended ${(ended as Run).state} (${why}): its log here may lack its last lines; \`berth runs logs ${id}\` shows what was stored once the server is back`,
        );
        return;
      }
      if (failures >= attempts) {
        throw new ApiClientError(
          0,
          'SERVER_UNREACHABLE',
          `lost the log stream of run ${id} at chunk ${last} and could not resume it (${why})`,
          `Check that the server runs; \`berth runs logs ${id}\` shows what was stored.`,
        );
      }
      const delayMs = Math.min((options.retryDelayMs ?? 500) * 2 ** (failures - 1), 10_000);
      handlers.retrying?.(
        `the log stream of run ${id} ${opened ? 'was cut' : 'could not be opened'} (${why}); trying again in ${formatDuration(delayMs)} (try ${failures + 1} of ${attempts})`,
        false,
      );
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      cut = true;
    }
  };

  /** One connection of a follow; done when the run ended (or `stopWhen`), else cut. */
  private async followOnce(
    id: string,
    after: number,
    handlers: FollowHandlers,
    options: FollowOptions,
    got: (seq: number) => void,
    connected: () => void,
  ): Promise<{ done: boolean }> {
    const idle = new AbortController();
    const signals = [idle.signal, ...(options.signal ? [options.signal] : [])];
    // A server that takes the connection and never answers holds a fetch for minutes otherwise.
    const connectMs = options.connectMs ?? 20_000;
    const noAnswer = setTimeout(
      () =>
        idle.abort(
          new Error(
            `no answer within ${formatDuration(connectMs)}; the server may be overloaded or hung`,
          ),
        ),
      connectMs,
    );
    const res = await this.fetchImpl(
      `${this.baseUrl.replace(/\/+$/, '')}/api/v1/runs/${encodeURIComponent(id)}/logs/stream`,
      {
        headers: {
          ...(this.token === null ? {} : { authorization: `Bearer ${this.token}` }),
          accept: 'text/event-stream',
          'last-event-id': String(after),
        },
        signal: AbortSignal.any(signals),
      },
    )
      .catch((err: unknown) => {
        throw unreachable(this.baseUrl, idle.signal.aborted ? idle.signal.reason : err);
      })
      .finally(() => clearTimeout(noAnswer));
    if (!res.ok || !res.body || !isEventStream(res)) {
      const answer = await readAnswer(res);
      const parsed = parseApiAnswer(answer);
      if (!parsed.ok || res.ok) throw notTheApi(this.baseUrl, answer);
      const text = answer.text;
      const error = (parsed.body ?? {}) as {
        code?: string;
        message?: string;
        hint?: string;
      };
      throw new ApiClientError(
        res.status,
        error.code ?? `HTTP_${res.status}`,
        error.message ?? text,
        error.hint,
      );
    }
    let last = after;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      const idleMs = options.idleMs ?? 45_000;
      timer = setTimeout(
        () => idle.abort(new Error(`nothing heard from the server for ${formatDuration(idleMs)}`)),
        idleMs,
      );
    };
    arm();
    connected();
    try {
      for await (const event of serverSentEvents(res.body)) {
        arm();
        if (event.event === 'log') {
          const chunk = JSON.parse(event.data) as LogChunk;
          // A chunk already handed on (a resumed stream never repeats one, but be sure).
          if (chunk.seq <= last) continue;
          last = chunk.seq;
          got(last);
          handlers.log(chunk);
        } else if (event.event === 'run') {
          const run = JSON.parse(event.data) as Run;
          handlers.run(run);
          if (options.stopWhen?.(run)) return { done: true };
        } else if (event.event === 'end') {
          return { done: true };
        }
      }
      return { done: false };
    } catch (err) {
      // Cut for silence: said as such, not as the stream's own "aborted".
      if (idle.signal.aborted) throw idle.signal.reason as Error;
      throw err;
    } finally {
      clearTimeout(timer);
      // Leaves the connection when stopping early (stopWhen): the server sees it close.
      idle.abort();
    }
  }

  logs = (id: string, after: number, limit?: number): Promise<Log> =>
    this.call(
      'GET',
      `/runs/${encodeURIComponent(id)}/logs?after=${after}${limit ? `&limit=${limit}` : ''}`,
    );
  /** The whole stored (masked) log as a text file. */
  logDownloadPath = (id: string): string => `/runs/${encodeURIComponent(id)}/logs/download`;
  /** Live log and states as server-sent events (see docs/server.md). */
  logStreamPath = (id: string, after: number): string =>
    `/runs/${encodeURIComponent(id)}/logs/stream?after=${after}`;
  decide = (id: string, decision: 'confirm' | 'discard' | 'cancel'): Promise<Run> =>
    this.call('POST', `/runs/${encodeURIComponent(id)}/${decision}`);
  createPool = (input: Static<typeof PoolInput>): Promise<Static<typeof PoolWithToken>> =>
    this.call('POST', '/pools', input);
  listPools = async (): Promise<Pool[]> =>
    (await this.call<{ pools: Pool[] }>('GET', '/pools')).pools;
  updatePool = (id: string, patch: Static<typeof PoolPatchInput>): Promise<Pool> =>
    this.call('PATCH', `/pools/${encodeURIComponent(id)}`, patch);
  deletePool = (id: string): Promise<void> =>
    this.call('DELETE', `/pools/${encodeURIComponent(id)}`);
  rotatePoolToken = (id: string): Promise<Static<typeof PoolWithToken>> =>
    this.call('POST', `/pools/${encodeURIComponent(id)}/token`);
  listWorkers = async (): Promise<Worker[]> =>
    (await this.call<{ workers: Worker[] }>('GET', '/workers')).workers;
  setDrained = (id: string, drained: boolean): Promise<Worker> =>
    this.call('POST', `/workers/${encodeURIComponent(id)}/${drained ? 'drain' : 'undrain'}`);
  createToken = (input: TokenInput): Promise<Static<typeof TokenWithToken>> =>
    this.call('POST', '/tokens', input);
  listTokens = async (): Promise<ApiToken[]> =>
    (await this.call<{ tokens: ApiToken[] }>('GET', '/tokens')).tokens;
  revokeToken = (id: string): Promise<void> =>
    this.call('DELETE', `/tokens/${encodeURIComponent(id)}`);
}

/** The code of an answer that is not berth's API (the command line makes it a berth error). */
export const ANSWER_UNEXPECTED = 'SERVER_ANSWER_UNEXPECTED';

function isEventStream(res: Response): boolean {
  return /^text\/event-stream\b/i.test(res.headers.get('content-type') ?? '');
}

/** An answer that is not berth's (a web page, a proxy's page): said with what answered. */
function notTheApi(baseUrl: string, answer: ServerAnswer): ApiClientError {
  const said = unexpectedAnswer(baseUrl || 'the server', answer);
  return new ApiClientError(answer.status, ANSWER_UNEXPECTED, said.message, said.hint);
}

/** A request that got no answer, with the reason the network gave (TLS ones explained). */
function unreachable(baseUrl: string, err: unknown): ApiClientError {
  const { kind, message } = noAnswer(baseUrl, err, 'client');
  return kind === 'not-trusted'
    ? new ApiClientError(
        0,
        'SERVER_NOT_TRUSTED',
        message,
        "Give the CA that signed the server's certificate with --ca-cert FILE or BERTH_CA_CERT=FILE (or NODE_EXTRA_CA_CERTS); berth never skips verifying the server.",
      )
    : new ApiClientError(
        0,
        'SERVER_UNREACHABLE',
        message,
        'Check the URL (berth login --server URL) and that the server runs.',
      );
}
