/**
 * A real `berth server` process for end-to-end tests, on SQLite in a temporary directory, and a
 * small client of its API with the admin token it printed. The server lives for a whole test
 * file (it makes no containers); `stop` ends it.
 */
import { spawn } from 'node:child_process';
import { expect } from 'vitest';
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
  const child = spawn(
    process.execPath,
    [BERTH_BIN, 'server', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-server-')],
    { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let said = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (/listening on http/.test(said)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`berth server exited (${code}): ${said}`)));
  });
  const url = /listening on (http:\/\/\S+)/.exec(said)?.[1] as string;
  const admin = /admin token \(shown once, keep it\): (\S+)/.exec(said)?.[1] as string;
  expect(admin).toMatch(/^berth_admin_/);
  return {
    url,
    admin,
    output: () => said,
    async api<T>(method: string, route: string, body?: unknown): Promise<ApiAnswer<T>> {
      const res = await fetch(`${url}/api/v1${route}`, {
        method,
        headers: {
          authorization: `Bearer ${admin}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : {}) as T, text };
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      await exited;
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
