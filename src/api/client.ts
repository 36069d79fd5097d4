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
  PoolOutput,
  PoolWithToken,
  RunOutput,
  SessionOutput,
  StackInput,
  StackOutput,
  StackPatchInput,
  TriggerInput,
  WorkerOutput,
} from './schemas.js';

export type Run = Static<typeof RunOutput>;
export type Stack = Static<typeof StackOutput>;
export type Pool = Static<typeof PoolOutput>;
export type Worker = Static<typeof WorkerOutput>;
export type Log = Static<typeof LogOutput>;
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
    try {
      res = await this.fetchImpl(this.url(path), {
        method,
        headers: {
          ...(this.token === null ? {} : { authorization: `Bearer ${this.token}` }),
          ...(this.csrfToken === null || method === 'GET' ? {} : { [CSRF_HEADER]: this.csrfToken }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new ApiClientError(
        0,
        'SERVER_UNREACHABLE',
        `cannot reach the berth server at ${this.baseUrl} (${cause})`,
        'Check the URL (berth login --server URL) and that the server runs.',
      );
    }
    const text = await res.text();
    const parsed = text ? (JSON.parse(text) as unknown) : undefined;
    if (!res.ok) {
      const error = (parsed ?? {}) as { code?: string; message?: string; hint?: string };
      throw new ApiClientError(
        res.status,
        error.code ?? `HTTP_${res.status}`,
        error.message ?? text,
        error.hint,
      );
    }
    return parsed as T;
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
  listStacks = async (): Promise<Stack[]> =>
    (await this.call<{ stacks: Stack[] }>('GET', '/stacks')).stacks;
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
  listRuns = async (filter: { stack?: string; limit?: number } = {}): Promise<Run[]> => {
    const query = new URLSearchParams();
    if (filter.stack) query.set('stack', filter.stack);
    if (filter.limit) query.set('limit', String(filter.limit));
    return (
      await this.call<{ runs: Run[] }>('GET', `/runs${query.size ? `?${query.toString()}` : ''}`)
    ).runs;
  };
  getRun = (id: string): Promise<Run> => this.call('GET', `/runs/${encodeURIComponent(id)}`);
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
  rotatePoolToken = (id: string): Promise<Static<typeof PoolWithToken>> =>
    this.call('POST', `/pools/${encodeURIComponent(id)}/token`);
  listWorkers = async (): Promise<Worker[]> =>
    (await this.call<{ workers: Worker[] }>('GET', '/workers')).workers;
  setDrained = (id: string, drained: boolean): Promise<Worker> =>
    this.call('POST', `/workers/${encodeURIComponent(id)}/${drained ? 'drain' : 'undrain'}`);
}
