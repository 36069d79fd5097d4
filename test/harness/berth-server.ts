/**
 * A real `berth server` process for end-to-end tests, on SQLite in a temporary directory, and a
 * small client of its API with the admin token it printed. The server lives for a whole test
 * file (it makes no containers); `stop` ends it.
 *
 * `startServerProcess` is the same for tests that need more of the process: a given data
 * directory and database (several servers on one PostgreSQL), a restart on the same data after a
 * kill, and an API client whose address can change.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { apiRequest } from './api-request.js';
import { BERTH_BIN, type BerthProcess } from './cli.js';
import { tempDir } from './ownership.js';

export interface ApiAnswer<T> {
  status: number;
  body: T;
  /** The answer as it came over the wire. */
  text: string;
}

export interface BerthServer {
  url: string;
  admin: string;
  /** What the server printed so far. */
  output(): string;
  api<T = Record<string, unknown>>(
    method: string,
    route: string,
    body?: unknown,
  ): Promise<ApiAnswer<T>>;
  stop(): Promise<void>;
}

export async function startBerthServer(env: Record<string, string> = {}): Promise<BerthServer> {
  const server = await spawnServer(['--data-dir', tempDir('berth-server-')], env);
  const { url } = server;
  const admin = server.admin as string;
  expect(admin).toMatch(/^berth_admin_/);
  return {
    url,
    admin,
    output: () => server.stderr(),
    async api<T>(method: string, route: string, body?: unknown): Promise<ApiAnswer<T>> {
      const res = await apiRequest(url, admin, method, route, body);
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : {}) as T, text };
    },
    async stop() {
      await server.stop();
    },
  };
}

/** A private pool that runs the engine's own images (no registry); its token. */
export async function createLocalPool(server: BerthServer, id: string): Promise<string> {
  const created = await server.api<{ token: string }>('POST', '/pools', {
    id,
    kind: 'private',
    pullPolicy: 'never',
  });
  expect(created.status).toBe(201);
  return created.body.token;
}

/** Ends the test's worker processes (SIGTERM: they drain) and waits for each. */
export async function stopWorkers(workers: BerthProcess[]): Promise<void> {
  for (const worker of workers.splice(0)) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** The admin token, when this start made it (the first start on a database). */
  admin: string | null;
  stderr(): string;
  /** SIGTERM, and the exit code once it has exited (at once when it had already). */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash), and wait for the exit. */
  kill(): Promise<number | null>;
}

/**
 * Starts `berth server ARGS` (on a free loopback port unless ARGS has --listen) and waits until it
 * listens (HTTP or HTTPS): the one way the tests start a server process.
 */
export async function spawnServer(
  args: string[],
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const child = spawn(process.execPath, [BERTH_BIN, 'server', ...listen, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let said = '';
  // 'close', not 'exit': what the server printed last has been read by then.
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (/listening on https?:/.test(said)) resolve();
    });
    child.on('close', (code) => reject(new Error(`berth server exited (${code}): ${said}`)));
  });
  const end = async (signal: NodeJS.Signals): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  return {
    child,
    url: /listening on (https?:\/\/\S+)/.exec(said)?.[1] as string,
    admin: /admin token \(shown once, keep it\): (\S+)/.exec(said)?.[1] ?? null,
    stderr: () => said,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}

/** A server on `dataDir` (several servers may share one database through `env`). */
export function startServerProcess(
  dataDir: string,
  env: Record<string, string> = {},
  listen = '127.0.0.1:0',
): Promise<ServerProcess> {
  return spawnServer(['--listen', listen, '--data-dir', dataDir], env);
}

export interface RunBody {
  id: string;
  state: string;
  stateReason: string | null;
  worker: string | null;
}

/** The API as the admin, at `url()` (which may change: a restarted server). */
export function apiClient(url: () => string, admin: string) {
  async function api<T = Record<string, unknown>>(
    method: string,
    route: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }> {
    const res = await apiRequest(url(), admin, method, route, body);
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
  }

  async function settled(id: string, states: string[], timeoutMs = 120_000): Promise<RunBody> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const run = (await api<RunBody>('GET', `/runs/${id}`)).body;
      if (states.includes(run.state)) return run;
      if (Date.now() > until)
        throw new Error(`run ${id} is still ${run.state} after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The whole stored log of a run, as text. */
  async function logText(id: string): Promise<string> {
    let text = '';
    let after = 0;
    for (;;) {
      const page = (
        await api<{ chunks: { seq: number; text: string }[] }>(
          'GET',
          `/runs/${id}/logs?after=${after}`,
        )
      ).body.chunks;
      if (page.length === 0) return text;
      for (const chunk of page) {
        expect(chunk.seq).toBe(after + 1);
        after = chunk.seq;
        text += chunk.text;
      }
    }
  }

  async function createPool(id: string): Promise<string> {
    // The tests' images are this engine's own: the pool runs them without a registry.
    const created = await api<{ token: string }>('POST', '/pools', {
      id,
      kind: 'private',
      pullPolicy: 'never',
    });
    expect(created.status).toBe(201);
    return created.body.token;
  }

  return { api, settled, logText, createPool };
}

/** A run's own output in its log: berth's warnings about the run are log lines of their own. */
export function jobOutput(log: string): string {
  return log
    .split(/(?<=\n)/)
    .filter((line) => !line.startsWith('[berth: warning: '))
    .join('');
}

/**
 * The CUSTOM workflow of a tracked run that stands in for Terraform: the plan writes random bytes
 * to kept.txt and prints their hash (`marker …`), the apply prints what it finds, so a test can
 * tell whether the apply saw the plan's workspace whole.
 */
const PLAN_WORKFLOW = [
  'init: echo init-done',
  'plan: head -c 24 /dev/urandom | od -An -tx1 | tr -d " \\n" > kept.txt && echo "marker $(md5sum < kept.txt | cut -c1-32)" && echo planned > "{{ .PlanFileName }}"',
  'showPlan: printf \'{"resource_changes":[{"address":"x.y","change":{"actions":["create"]}}]}\'',
  'apply: echo "applied $(cat {{ .PlanFileName }}) with $(cat kept.txt)"',
].join('\n');

/** A stack source for tracked runs with PLAN_WORKFLOW, and `files` (name → content) beside it. */
export function planStackDir(files: Record<string, string | Buffer> = {}): string {
  const dir = tempDir('berth-stack-');
  mkdirSync(path.join(dir, '.berth'));
  writeFileSync(
    path.join(dir, '.berth', 'config.yml'),
    'version: 2\nstack_defaults:\n  terraform_workflow_tool: CUSTOM\n',
  );
  writeFileSync(path.join(dir, '.berth', 'workflow.yml'), `${PLAN_WORKFLOW}\n`);
  writeFileSync(path.join(dir, 'main.tf'), '');
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  return dir;
}
