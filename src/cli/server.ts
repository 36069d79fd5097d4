/** `berth server` and `berth worker`: the control plane and a launcher that leases its runs. */
import { homedir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { BerthError } from '../domain/errors.js';
import { FETCH_BAD_PORTS } from '../domain/server-address.js';
import { parseConcurrency } from './concurrency.js';
import { parseByteSize, parseDuration } from '../domain/units.js';
import { loadServerTls, trustedCas } from '../net/tls-files.js';
import { claimDirectory } from './directory-claim.js';
import type { Output } from './render.js';

export function dataDirFrom(env: NodeJS.ProcessEnv, flag?: string): string {
  if (flag) return path.resolve(flag);
  const dataHome =
    env.XDG_DATA_HOME?.trim() || path.join(env.HOME?.trim() || homedir(), '.local', 'share');
  return env.BERTH_DATA_DIR?.trim() || path.join(dataHome, 'berth');
}

/**
 * The server's TLS files from --tls-cert and --tls-key (both or neither), read and checked
 * before anything starts: a bad file is the operator's to fix first.
 */
function serverTls(opts: TlsOptions): { cert: Buffer; key: Buffer } | undefined {
  if (!opts.tlsCert && !opts.tlsKey) return undefined;
  if (!opts.tlsCert || !opts.tlsKey) {
    throw new BerthError(
      'BERTH_USAGE',
      `--tls-cert and --tls-key go together (got only ${opts.tlsCert ? '--tls-cert' : '--tls-key'})`,
      {
        hint: "Give the server's certificate chain with --tls-cert FILE and its key with --tls-key FILE, or neither for plain HTTP (behind a TLS-terminating proxy).",
      },
    );
  }
  return loadServerTls(opts.tlsCert, opts.tlsKey);
}

interface TlsOptions {
  tlsCert?: string;
  tlsKey?: string;
}

/** BERTH_LOG_LIMIT on the server: the most bytes of one run's log it stores. */
function serverLogLimit(env: NodeJS.ProcessEnv): number {
  const text = env.BERTH_LOG_LIMIT?.trim() || '4MiB';
  const parsed = parseByteSize(text);
  if ('error' in parsed)
    throw new BerthError('BERTH_USAGE', `BERTH_LOG_LIMIT=${text}: ${parsed.error}`);
  if (parsed.bytes < 1024)
    throw new BerthError('BERTH_USAGE', `BERTH_LOG_LIMIT=${text}: keep at least 1KiB`);
  return parsed.bytes;
}

/** The address to listen on: --listen, else BERTH_LISTEN, else 127.0.0.1:8080. */
function listenFrom(env: NodeJS.ProcessEnv, flag?: string): [string, string] {
  if (flag !== undefined) return [flag, '--listen'];
  const fromEnv = env.BERTH_LISTEN?.trim();
  return fromEnv ? [fromEnv, 'BERTH_LISTEN'] : ['127.0.0.1:8080', '--listen'];
}

function listenAddress(text: string, source: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new BerthError('BERTH_USAGE', `${source} ${JSON.stringify(text)} is not HOST:PORT`, {
      hint: 'e.g. --listen 127.0.0.1:8080, or 0.0.0.0:8080 behind a TLS-terminating proxy.',
    });
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

/**
 * A port that fetch clients refuse (FETCH_BAD_PORTS): `berth up`'s own worker could never reach
 * its server there (refused); a `berth server` may sit behind a proxy on another port (said).
 */
function badPort(port: number, listen: [string, string]): string | null {
  if (!FETCH_BAD_PORTS.has(port)) return null;
  return `${listen[1]} ${JSON.stringify(listen[0])}: port ${port} is one that web browsers and Node's fetch refuse to connect to (a "bad port" of the fetch standard)`;
}

/** BERTH_DATABASE_POOL_SIZE: PostgreSQL connections of one server process (default 20). */
function databasePoolSize(env: NodeJS.ProcessEnv): number | undefined {
  const text = env.BERTH_DATABASE_POOL_SIZE?.trim();
  if (!text) return undefined;
  const size = Number(text);
  if (!/^\d+$/.test(text) || size < 2 || size > 1000) {
    throw new BerthError(
      'BERTH_USAGE',
      `BERTH_DATABASE_POOL_SIZE=${JSON.stringify(text)} is not a number of connections from 2 to 1000`,
      {
        hint: 'Use e.g. BERTH_DATABASE_POOL_SIZE=20 (the default); every server process opens up to this many, plus one for wake-ups.',
      },
    );
  }
  return size;
}

/** The saved-workspace limit as `berth run` takes it (at least 1MiB); undefined: the default. */
export function savedWorkspaceLimit(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const limit = parseByteSize(text);
  if ('error' in limit || limit.bytes < 1024 * 1024)
    throw new BerthError(
      'BERTH_USAGE',
      `saved-workspace limit ${JSON.stringify(text)}: ${'error' in limit ? limit.error : 'allow at least 1MiB'}`,
      { hint: 'e.g. --saved-workspace-limit 2GiB (BERTH_SAVED_WORKSPACE_LIMIT).' },
    );
  return limit.bytes;
}

export function registerServer(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  version: string,
): void {
  program
    .command('server')
    .description('the control plane: stacks, runs, worker pools and workers over an HTTP API')
    .option(
      '--listen <host:port>',
      'address to listen on (default: $BERTH_LISTEN or 127.0.0.1:8080)',
    )
    .option(
      '--data-dir <dir>',
      'SQLite database, secrets key and blobs (default: $BERTH_DATA_DIR or ~/.local/share/berth)',
    )
    .option(
      '--tls-cert <file>',
      "serve HTTPS with this certificate chain (PEM, the server's first)",
    )
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM, unencrypted)')
    .option(
      '--saved-workspace-limit <size>',
      'the most a tracked run may keep between plan and apply (default: $BERTH_SAVED_WORKSPACE_LIMIT or 1GiB)',
    )
    .option(
      '--new-secrets-key',
      "the secrets key is lost for good: forget what only it opened (stacks' secret variables, saved workspaces of runs waiting) and make this server's key ($BERTH_SECRETS_KEY, else DIR/secrets.key; never made) the servers' key",
    )
    .option(
      '--new-admin-token',
      "the admin token is lost: give the token 'admin' a new one (printed once; the old one and its web sessions stop working), then serve",
    )
    .action(
      async (
        opts: {
          listen?: string;
          dataDir?: string;
          savedWorkspaceLimit?: string;
          newSecretsKey?: boolean;
          newAdminToken?: boolean;
        } & TlsOptions,
      ) => {
        const listen = listenFrom(env, opts.listen);
        const { host, port } = listenAddress(...listen);
        const unreachable = badPort(port, listen);
        if (unreachable)
          io.stderr.write(
            `berth: warning: ${unreachable}: berth's command line, its workers and the web page can reach this server only through a proxy on another port\n`,
          );
        const tls = serverTls(opts);
        const logLimitBytes = serverLogLimit(env);
        const savedWorkspaceLimitBytes = savedWorkspaceLimit(
          opts.savedWorkspaceLimit ?? env.BERTH_SAVED_WORKSPACE_LIMIT?.trim(),
        );
        const leaseMs = leaseFrom(env);
        const forgetWorkersAfterMs = forgetWorkersAfter(env, leaseMs);
        const poolSize = databasePoolSize(env);
        // Listening for SIGINT/SIGTERM before the server starts: a signal that comes while it
        // starts (or right after its banner) stops it the same way, instead of killing it.
        let stopRequested = (): void => {};
        const stopping = new Promise<void>((resolve) => {
          stopRequested = resolve;
        });
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          stopRequested();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        const { startServer } = await import('../server/start.js');
        const server = await startServer({
          host,
          port,
          dataDir: dataDirFrom(env, opts.dataDir),
          databaseUrl: env.BERTH_DATABASE_URL?.trim() || undefined,
          ...(poolSize === undefined ? {} : { databasePoolSize: poolSize }),
          env,
          version,
          leaseMs,
          forgetWorkersAfterMs,
          blobDir: env.BERTH_BLOB_DIR?.trim() || undefined,
          savedWorkspaceLimitBytes,
          logLimitBytes,
          ...(tls ? { tls } : {}),
          ...(opts.newSecretsKey ? { newSecretsKey: true } : {}),
          ...(opts.newAdminToken ? { newAdminToken: true } : {}),
          say: (line) => io.stderr.write(`berth: ${line}\n`),
        }).catch((err: unknown) => {
          stop();
          throw err;
        });
        await stopping;
        io.stderr.write('berth: server stopping\n');
        await server.close();
      },
    );
}

/** `berth up`: a server on SQLite and one local worker in a private pool, for a first try. */
export function registerUp(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  version: string,
): void {
  program
    .command('up')
    .description(
      'a berth server (SQLite) and one worker of its private pool "local", on this machine',
    )
    .option('--listen <host:port>', 'as for berth server')
    .option('--data-dir <dir>', 'as for berth server')
    .option('--concurrency <n>', "the local worker's runs at once", '2')
    .option('--tls-cert <file>', 'as for berth server')
    .option('--tls-key <file>', 'as for berth server')
    .option(
      '--ca-cert <file>',
      "the CA the local worker trusts for the server (default: $BERTH_CA_CERT, else --tls-cert's own chain)",
    )
    .action(
      async (
        opts: {
          listen?: string;
          dataDir?: string;
          concurrency: string;
          caCert?: string;
        } & TlsOptions,
      ) => {
        const listen = listenFrom(env, opts.listen);
        const { host, port } = listenAddress(...listen);
        const unreachable = badPort(port, listen);
        if (unreachable)
          throw new BerthError(
            'BERTH_USAGE',
            `${unreachable}, so this berth up's own worker could never reach its server there`,
            { hint: 'Give another port, e.g. --listen 127.0.0.1:8080.' },
          );
        const tls = serverTls(opts);
        const cas = trustedCas(opts.caCert ?? (env.BERTH_CA_CERT?.trim() || opts.tlsCert), env);
        const logLimitBytes = serverLogLimit(env);
        const concurrency = parseConcurrency(opts.concurrency);
        const dataDir = dataDirFrom(env, opts.dataDir);
        // A second `berth up` on the same data directory would give the local pool a new token,
        // which the first one's worker would then be refused with.
        const release = claimDirectory(dataDir, {
          file: 'up.owner',
          holder: 'berth up',
          what: 'data directory',
          setting: '--data-dir (BERTH_DATA_DIR)',
          hint: 'Use the berth up that runs already (its address is in its first lines), stop it first, or give this one another --data-dir (BERTH_DATA_DIR).',
        });
        let releaseStateDir = (): void => undefined;
        try {
          // Its worker's state directory too, before the server prints a token it would not use.
          const stateDir = env.BERTH_STATE_DIR?.trim() || path.join(dataDir, 'worker');
          const { claimStateDir } = await import('./worker.js');
          releaseStateDir = claimStateDir(
            stateDir,
            env.BERTH_STATE_DIR?.trim()
              ? 'Unset BERTH_STATE_DIR for this berth up (it then keeps its worker in its data directory) or give it another, or stop the berth up or worker that uses this one.'
              : "Stop the berth worker that uses it (a worker given this data directory's worker directory as BERTH_STATE_DIR), or give this berth up another --data-dir.",
          );
          const { startServer } = await import('../server/start.js');
          const server = await startServer({
            host,
            port,
            dataDir,
            env,
            version,
            localPool: 'local',
            // Its own worker has left by the time it closes: nothing waits for an answer.
            closeConnectionsAfterMs: 1000,
            logLimitBytes,
            leaseMs: leaseFrom(env),
            forgetWorkersAfterMs: forgetWorkersAfter(env, leaseFrom(env)),
            ...(tls ? { tls } : {}),
            say: (line) => io.stderr.write(`berth: ${line}\n`),
          });
          io.stderr.write(
            `berth: up: server ${server.url}, worker pool "local"; next: berth login --server ${server.url} (with the admin token), then berth stack create NAME --dir DIR --pool local\n`,
          );
          try {
            const { runWorker } = await import('./worker.js');
            await runWorker({
              server: server.url,
              token: server.poolToken as string,
              concurrency,
              io,
              env: { ...env, BERTH_STATE_DIR: stateDir },
              stateDirClaimed: true,
              version,
              cas,
              // Its token is the local pool's, which berth up sets on every start.
              tokenFix:
                "Start berth up again: it gives its worker the local pool's current token itself (a `berth pool rotate-token local` ends the old one at once).",
            });
          } finally {
            await server.close();
          }
        } finally {
          releaseStateDir();
          release();
        }
      },
    );
}

/**
 * How long a worker may be silent before the server forgets it (BERTH_WORKER_FORGET_AFTER, 24 h):
 * at least the lease time, or a worker would be forgotten while its runs are still its own.
 */
export function forgetWorkersAfter(env: NodeJS.ProcessEnv, leaseMs: number): number {
  const text = env.BERTH_WORKER_FORGET_AFTER?.trim() || '24h';
  const forget = parseDuration(text);
  if ('error' in forget)
    throw new BerthError('BERTH_USAGE', `BERTH_WORKER_FORGET_AFTER=${text}: ${forget.error}`, {
      hint: 'Set BERTH_WORKER_FORGET_AFTER to a duration such as 24h, 7d or 90m, at least the lease time (BERTH_WORKER_LEASE_TIMEOUT); unset, it is 24h.',
    });
  if (forget.ms < leaseMs) {
    throw new BerthError(
      'BERTH_USAGE',
      `BERTH_WORKER_FORGET_AFTER=${text} is shorter than the lease time (BERTH_WORKER_LEASE_TIMEOUT, ${leaseMs / 1000} s)`,
      { hint: 'Set BERTH_WORKER_FORGET_AFTER to the lease time or longer (default 24h).' },
    );
  }
  return forget.ms;
}

/** How long a worker holds a run without a heartbeat (BERTH_WORKER_LEASE_TIMEOUT, 60 s). */
function leaseFrom(env: NodeJS.ProcessEnv): number {
  const text = env.BERTH_WORKER_LEASE_TIMEOUT?.trim() || '60s';
  const lease = parseDuration(text);
  if ('error' in lease)
    throw new BerthError('BERTH_USAGE', `BERTH_WORKER_LEASE_TIMEOUT=${text}: ${lease.error}`);
  return lease.ms;
}
