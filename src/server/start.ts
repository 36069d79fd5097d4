/**
 * `berth server` as a process: the store (SQLite in the data directory, or PostgreSQL), the
 * admin token made on first start (printed once, stored as its hash), the HTTP API, and the
 * sweep that ends runs whose worker stopped answering. Several servers may share one PostgreSQL.
 */
import { existsSync } from 'node:fs';
import { rmdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { StoreConflict } from '../store/store.js';
import { openStore, redact } from '../store/open-store.js';
import { databaseTrouble, type DatabaseTrouble } from '../store/database-trouble.js';
import { makeDirectory } from '../store/make-directory.js';
import { BerthError } from '../domain/errors.js';
import { Notifications } from '../store/notifications.js';
import { buildServer } from './app.js';
import { PoolSignals } from './pool-signals.js';
import { hashToken, newToken } from './auth.js';
import {
  SecretBox,
  checkSecretsKey,
  holdsSealed,
  renewSecretsKey,
  staleKeyFile,
} from './secrets.js';
import { resolveCommit } from './commits.js';
import { BlobStore, checkBlobStore } from './blob-store.js';
import { isTerminal } from '../domain/run-state.js';
import type { Store } from '../store/store.js';

/** The saved-workspace limit when none is set (as `berth run`'s, docs/usage.md). */
export const DEFAULT_BLOB_LIMIT = 1024 ** 3;
/** How often blobs no run needs any more (a crash between an end and its delete) are removed. */
const BLOB_SWEEP_MS = 10 * 60_000;
/** BERTH_WORKER_FORGET_AFTER's default. */
export const DEFAULT_FORGET_WORKERS_AFTER_MS = 24 * 3600_000;

export interface ServerOptions {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl?: string;
  /** PostgreSQL connections of this process (BERTH_DATABASE_POOL_SIZE). */
  databasePoolSize?: number;
  env: NodeJS.ProcessEnv;
  version: string;
  leaseMs?: number;
  /**
   * Workers not heard from for this long (and holding no lease) are removed from the list
   * (BERTH_WORKER_FORGET_AFTER, 24 h); one that comes back registers again.
   */
  forgetWorkersAfterMs?: number;
  /** Where saved workspaces are kept (default: `blobs` in the data directory). */
  blobDir?: string;
  /** The most one saved workspace may be, in bytes (default 1 GiB). */
  savedWorkspaceLimitBytes?: number;
  /** Lines for the operator (the admin token, once). */
  say: (line: string) => void;
  /**
   * `berth up`: a private pool of this id exists (made if missing) and gets a fresh token for
   * the worker running beside the server.
   */
  localPool?: string;
  /**
   * Closing: connections still open this long after closing began are closed, whatever they do
   * (`berth up`, whose worker has left by then). Unset: closing waits for every answer on its way
   * (a worker's workspace upload or download may take long).
   */
  closeConnectionsAfterMs?: number;
  /** TLS: the certificate chain and key (PEM), read and checked by the caller (net/tls-files.ts). */
  tls?: { cert: Buffer; key: Buffer };
  /** Bytes of one run's log the server stores at most (BERTH_LOG_LIMIT). */
  logLimitBytes?: number;
  /**
   * `--new-secrets-key`: the key that sealed the database's values is lost; forget what it sealed
   * and record this server's key (server/secrets.ts, renewSecretsKey). Nothing happens when the
   * key opens what the database holds.
   */
  newSecretsKey?: boolean;
  /** `--new-admin-token`: the admin token is lost; the token `admin` gets a new one, said once. */
  newAdminToken?: boolean;
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
  const tls = options.tls;
  makeDirectory(options.dataDir, 'data directory', '--data-dir (BERTH_DATA_DIR)');
  let notifications: Notifications | null = null;
  let listening: { close: () => Promise<unknown> } | null = null;
  const store = await openStore({
    databaseUrl: options.databaseUrl,
    dataDir: options.dataDir,
    ...(options.databasePoolSize === undefined ? {} : { poolSize: options.databasePoolSize }),
    onTrouble: options.say,
  });
  try {
    await store.migrate().catch((err: unknown) => {
      throw databaseUnavailable(err, options.databaseUrl) ?? err;
    });
    // Before anything is made or printed: a server with the wrong key does not start at all.
    const secrets = SecretBox.load(options.env, options.dataDir, {
      sealed: await holdsSealed(store),
      renewing: options.newSecretsKey === true,
    });
    const stale = staleKeyFile(options.env, options.dataDir);
    if (stale) options.say(stale);
    if (options.newSecretsKey) {
      for (const line of await renewSecretsKey(store, secrets, new Date())) options.say(line);
    } else {
      await checkSecretsKey(store, secrets);
    }
    const blobDir = options.blobDir ?? path.join(options.dataDir, 'blobs');
    const blobDirExisted = existsSync(blobDir);
    const blobs = await BlobStore.open(
      blobDir,
      options.savedWorkspaceLimitBytes ?? DEFAULT_BLOB_LIMIT,
    );
    await checkBlobStore(store, blobs).catch(async (err: unknown) => {
      // A refused start leaves no directory of its own behind (rmdir: only an empty one).
      if (!blobDirExisted) await rmdir(blobDir).catch(() => undefined);
      throw err;
    });
    const leaseMs = options.leaseMs ?? 60_000;
    const signals = new PoolSignals();
    if (store.dialect === 'postgres' && options.databaseUrl) {
      notifications = await Notifications.listen(
        options.databaseUrl,
        {
          onTopic: (topic) => signals.deliver(topic),
          onResync: () => signals.wakeAll(),
          onTrouble: (message) => options.say(message),
        },
        { send: (channel, payload) => store.notify(channel, payload) },
      );
      signals.relayTo(notifications);
    }
    const sweepBlobs = (): void => {
      void blobs.sweep(blobNeeded(store), new Date()).catch((err: unknown) => {
        options.say(`blob sweep failed: ${(err as Error).message}`);
      });
    };
    sweepBlobs();
    const app = await buildServer({
      signals,
      store,
      blobs,
      secrets,
      version: options.version,
      leaseMs,
      resolveCommit,
      say: options.say,
      ...(tls ? { tls } : {}),
      ...(options.logLimitBytes ? { logLimitBytes: options.logLimitBytes } : {}),
      webRoot: builtWebPage(),
    });
    await app.listen({ host: options.host, port: options.port }).catch(async (err: unknown) => {
      await app.close();
      throw listenFailure(err, options.host, options.port);
    });
    // A failure from here on (the database) closes the server too: the process would otherwise
    // print the error and go on listening.
    listening = app;
    // The local pool's token too: a second `berth up` that cannot listen (the first holds the
    // address) must not replace the token the first one's worker uses.
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
    // Only once the address is this server's: a start that cannot listen prints no token it
    // would never show again (nor replaces the admin token with one it does not show).
    if (options.newAdminToken) {
      const token = newToken('admin');
      const admin = { id: 'admin', name: 'admin', role: 'admin' } as const;
      await store.replaceToken(admin, hashToken(token), new Date());
      options.say(`new admin token (shown once, keep it; the old one no longer works): ${token}`);
    } else if (!(await store.findTokenById('admin'))) {
      const token = newToken('admin');
      try {
        await store.createToken(
          { id: 'admin', name: 'admin', role: 'admin' },
          hashToken(token),
          new Date(),
        );
        options.say(`admin token (shown once, keep it): ${token}`);
      } catch (err) {
        // Another server made it first (SQLite may name the unique name rather than the id).
        if (!(err instanceof StoreConflict) || !(await store.findTokenById('admin'))) throw err;
      }
    }
    const address = app.server.address() as AddressInfo;
    const url = `${tls ? 'https' : 'http'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    options.say(
      `berth server listening on ${url} (${options.databaseUrl ? `PostgreSQL ${redact(options.databaseUrl)}` : `SQLite in ${options.dataDir}`})`,
    );
    // Runs whose worker stopped answering: back to the queue, or FAILED naming the worker.
    const sweep = setInterval(
      () => {
        void store.expireLeases(new Date()).then(
          (changed) => {
            for (const run of changed) {
              options.say(
                `run ${run.id} of stack ${run.stackId}: ${run.state}${run.stateReason ? ` (${run.stateReason})` : ''}`,
              );
              app.notifyPool(run.poolId);
              if (isTerminal(run.state)) void blobs.delete(run.id).catch(() => undefined);
            }
          },
          (err: unknown) => options.say(`lease sweep failed: ${(err as Error).message}`),
        );
      },
      Math.max(250, Math.floor(leaseMs / 4)),
    );
    const blobSweep = setInterval(sweepBlobs, BLOB_SWEEP_MS);
    // Workers gone for good (an autoscaled machine, a container with a new id each start) leave
    // the list once they have been silent for the forget time; their runs keep their id.
    const forgetMs = options.forgetWorkersAfterMs ?? DEFAULT_FORGET_WORKERS_AFTER_MS;
    const upSince = Date.now();
    const workerSweep = setInterval(
      () => {
        // Not before live workers have had a lease time to reach this server again: a server
        // that was down longer than the forget time would otherwise forget them all at start.
        if (Date.now() - upSince < leaseMs) return;
        const silentBefore = new Date(Date.now() - forgetMs);
        void store.forgetWorkers(silentBefore).then(
          (gone) => {
            for (const worker of gone) {
              options.say(
                `worker ${worker.id} of pool ${worker.poolId} (host ${worker.host}) forgotten: not heard from since ${worker.lastHeartbeatAt} (BERTH_WORKER_FORGET_AFTER); it registers again if it comes back`,
              );
            }
          },
          (err: unknown) => options.say(`worker sweep failed: ${(err as Error).message}`),
        );
      },
      Math.max(250, Math.min(60_000, Math.floor(forgetMs / 4))),
    );
    return {
      url,
      poolToken,
      close: async () => {
        clearInterval(sweep);
        clearInterval(blobSweep);
        clearInterval(workerSweep);
        // Closing ends every wait and stream at once (preClose in app.ts) and the connections
        // idle then; one Node does not count as idle stays open for the keep-alive time (72 s):
        // `berth up` waited that long on its own worker's last one after its goodbye.
        const after = options.closeConnectionsAfterMs;
        const force =
          after === undefined
            ? undefined
            : setTimeout(() => app.server.closeAllConnections(), after);
        try {
          await app.close();
        } finally {
          clearTimeout(force);
        }
        await notifications?.close();
        await store.close();
      },
    };
  } catch (err) {
    await listening?.close();
    await notifications?.close();
    await store.close();
    throw err;
  }
}

/** A blob is needed while its run exists and has not ended. */
function blobNeeded(store: Store): (runId: string) => Promise<boolean> {
  return async (runId) => {
    const run = await store.getRun(runId);
    return run !== null && !isTerminal(run.state);
  };
}

/** A database that cannot be used at start, as berth's error naming it (null: another failure). */
function databaseUnavailable(err: unknown, url: string | undefined): BerthError | null {
  const trouble = url ? databaseTrouble(err) : null;
  if (!url || !trouble) return null;
  const where = `the database at ${redact(url)}`;
  const hints: Record<DatabaseTrouble['kind'], string> = {
    unreachable: `Check that PostgreSQL runs and that this machine reaches it at the host and port of BERTH_DATABASE_URL.`,
    auth: 'Check the user name and password in BERTH_DATABASE_URL (and pg_hba.conf for this machine).',
    missing:
      "Create the database (e.g. `createdb NAME`, owned by the URL's user), or name one that exists in BERTH_DATABASE_URL.",
    down: 'PostgreSQL is shutting down or starting up: try again when it is up.',
    busy: 'PostgreSQL has no connection free (max_connections): lower BERTH_DATABASE_POOL_SIZE on the servers or raise max_connections.',
  };
  return new BerthError(
    'BERTH_DATABASE_UNAVAILABLE',
    `berth server cannot use ${where}: ${trouble.cause}`,
    { hint: hints[trouble.kind], cause: err },
  );
}

/** Why the server could not listen, as a usage error naming the address. */
function listenFailure(err: unknown, host: string, port: number): unknown {
  const code = (err as { code?: string }).code;
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why: Record<string, [string, string]> = {
    EADDRINUSE: [
      'another process listens there',
      'Stop it (a berth server or berth up already running?), or give another --listen HOST:PORT (BERTH_LISTEN).',
    ],
    EACCES: [
      'this user may not listen on that port',
      'Use a port above 1023, or give the process the right to bind low ports.',
    ],
    EADDRNOTAVAIL: [
      "that address is not one of this machine's",
      'Give an address of this machine in --listen (e.g. 127.0.0.1 or 0.0.0.0).',
    ],
  };
  const known = code ? why[code] : undefined;
  if (!known) return err;
  return new BerthError('BERTH_USAGE', `cannot listen on ${address}: ${known[0]} (${code})`, {
    hint: known[1],
    cause: err,
  });
}
