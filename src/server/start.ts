/**
 * `berth server` as a process: the store (SQLite in the data directory, or PostgreSQL), the
 * admin token made on first start (printed once, stored as its hash), the HTTP API, and the
 * sweep that ends runs whose worker stopped answering. Several servers may share one PostgreSQL.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { StoreConflict } from '../store/store.js';
import { openStore, redact } from '../store/open-store.js';
import { buildServer } from './app.js';
import { hashToken, newToken } from './auth.js';
import { SecretBox } from './secrets.js';
import { resolveCommit } from './commits.js';

export interface ServerOptions {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl?: string;
  env: NodeJS.ProcessEnv;
  version: string;
  leaseMs?: number;
  /** Lines for the operator (the admin token, once). */
  say: (line: string) => void;
  /**
   * `berth up`: a private pool of this id exists (made if missing) and gets a fresh token for
   * the worker running beside the server.
   */
  localPool?: string;
}

export interface RunningServer {
  url: string;
  /** With `localPool`: a fresh token of that pool. */
  poolToken: string | null;
  close(): Promise<void>;
}

/**
 * The web page `npm run build` wrote: dist/web beside the bundle this file is part of (or, when
 * running from source, the repository's dist/web). Without one the server answers the API only.
 */
function builtWebPage(): string | undefined {
  for (const candidate of ['../web/', '../../dist/web/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(`${dir}assets`)) return dir;
  }
  return undefined;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const store = await openStore({ databaseUrl: options.databaseUrl, dataDir: options.dataDir });
  try {
    await store.migrate();
    if (!(await store.findTokenById('admin'))) {
      const token = newToken('admin');
      try {
        await store.createToken(
          { id: 'admin', name: 'admin', role: 'admin' },
          hashToken(token),
          new Date(),
        );
        options.say(`admin token (shown once, keep it): ${token}`);
      } catch (err) {
        // Another server made it first.
        if (!(err instanceof StoreConflict)) throw err;
      }
    }
    let poolToken: string | null = null;
    if (options.localPool) {
      poolToken = newToken('pool');
      const hash = hashToken(poolToken);
      if (!(await store.setPoolTokenHash(options.localPool, hash))) {
        await store.createPool(
          {
            id: options.localPool,
            name: 'this machine',
            kind: 'private',
            allowList: [],
            defaultImage: null,
            pullPolicy: null,
          },
          hash,
          new Date(),
        );
      }
    }
    const leaseMs = options.leaseMs ?? 60_000;
    const app = await buildServer({
      store,
      secrets: SecretBox.load(options.env, options.dataDir, await store.hasSecretVariables()),
      version: options.version,
      leaseMs,
      resolveCommit,
      webRoot: builtWebPage(),
    });
    await app.listen({ host: options.host, port: options.port });
    const address = app.server.address() as AddressInfo;
    const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    options.say(
      `berth server listening on ${url} (${options.databaseUrl ? `PostgreSQL ${redact(options.databaseUrl)}` : `SQLite in ${options.dataDir}`})`,
    );
    // Runs whose worker stopped answering: back to the queue, or FAILED naming the worker.
    const sweep = setInterval(
      () => {
        void store.expireLeases(new Date()).then(
          (changed) => {
            for (const run of changed) app.notifyPool(run.poolId);
          },
          (err: unknown) => options.say(`lease sweep failed: ${(err as Error).message}`),
        );
      },
      Math.max(250, Math.floor(leaseMs / 4)),
    );
    return {
      url,
      poolToken,
      close: async () => {
        clearInterval(sweep);
        await app.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
