/**
 * The one typed client of the API, for the command line (and the web page): every call's types
 * come from the same schemas the server validates with. Errors keep the server's code and hint.
 */
import type { Static } from 'typebox';
import type {
  LogOutput,
  PoolInput,
  PoolOutput,
  PoolWithToken,
  RunOutput,
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
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.baseUrl.replace(/\/+$/, '')}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
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
  logs = (id: string, after: number): Promise<Log> =>
    this.call('GET', `/runs/${encodeURIComponent(id)}/logs?after=${after}`);
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
