/** `berth worker`: leases runs of its pool from a berth server and runs them here. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { BerthError } from '../domain/errors.js';
import { parseConcurrency } from './concurrency.js';
import { parseServerAddress } from '../domain/server-address.js';
import { parseByteSize, parseDuration } from '../domain/units.js';
import { readWorkerJobSettings, settingOf, type ExtraMount } from '../domain/worker-settings.js';
import { DockerExecutor } from '../executor/docker/docker-executor.js';
import { DockerApiError } from '../executor/docker/daemon-errors.js';
import { EngineClient } from '../executor/docker/engine-client.js';
import { FileJobUserCache } from '../launcher/job-user-cache.js';
import { currentLauncherId, isLauncherAlive } from '../launcher/launcher-identity.js';
import { DEFAULT_SAVED_WORKSPACE_LIMIT } from '../launcher/run-job.js';
import {
  buildRunnerImage,
  readSettings,
  readWorkspaceDelivery,
  workspaceRoot,
} from '../launcher/runner-image.js';
import { dockerConfigDirFrom } from '../registry/docker-config.js';
import { fetchTrusting, trustedCas } from '../net/tls-files.js';
import { HttpWorkerProtocol, registrationRefused } from '../worker/protocol.js';
import { RepositoryCache } from '../worker/repository-cache.js';
import { Worker } from '../worker/worker.js';
import { claimDirectory } from './directory-claim.js';
import type { Output } from './render.js';
import { workerAdmin } from './remote.js';
import { savedWorkspaceLimit } from './server.js';

function duration(name: string, text: string): number {
  const parsed = parseDuration(text);
  if ('error' in parsed) throw new BerthError('BERTH_USAGE', `${name}: ${parsed.error}`);
  return parsed.ms;
}

export function registerWorker(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  version: string,
): void {
  program
    .command('worker')
    .description('lease runs of a worker pool from a berth server and run them here')
    .argument('[verb]', "list | drain | undrain: the server's workers (default: run a worker here)")
    .argument('[id]', 'the worker to drain or undrain')
    .option('--server <url>', 'the berth server (default: $BERTH_SERVER)')
    .option('--concurrency <n>', 'runs at once', '1')
    .option(
      '--ca-cert <file>',
      "a CA to trust for the server's TLS certificate, beside the system's (default: $BERTH_CA_CERT)",
    )
    .option('--json', 'list, drain, undrain: print JSON')
    .action(
      async (
        verb: string | undefined,
        id: string | undefined,
        opts: { server?: string; concurrency: string; caCert?: string; json?: boolean },
      ) => {
        if (verb !== undefined) {
          await workerAdmin(verb, id, opts.json, io, env);
          return;
        }
        const given = opts.server ?? env.BERTH_SERVER?.trim();
        const token = env.BERTH_POOL_TOKEN?.trim();
        if (!given)
          throw new BerthError('BERTH_USAGE', 'berth worker needs --server URL (or BERTH_SERVER)');
        if (!token) {
          throw new BerthError(
            'BERTH_USAGE',
            'berth worker needs the pool token in BERTH_POOL_TOKEN',
            {
              hint: 'Set BERTH_POOL_TOKEN to the token `berth pool create` showed (not on the command line, where ps shows it).',
            },
          );
        }
        const server = parseServerAddress(
          given,
          opts.server === undefined ? 'BERTH_SERVER' : '--server',
        );
        const concurrency = parseConcurrency(opts.concurrency);
        const cas = trustedCas(opts.caCert ?? env.BERTH_CA_CERT?.trim(), env);
        await runWorker({ server, token, concurrency, io, env, version, cas });
      },
    );
}

/**
 * A worker in this process until SIGTERM drains it: the engine, the sweep of what an earlier
 * start left, registration (the id kept in the state directory), then leasing and running.
 */
export async function runWorker(options: {
  server: string;
  token: string;
  concurrency: number;
  io: Output;
  env: NodeJS.ProcessEnv;
  version: string;
  /** The CAs to verify the server with (null: the system's). */
  cas?: string[] | null;
  /** What to do when the server refuses the pool token (see Worker's option). */
  tokenFix?: string;
  /** The caller holds the state directory's claim already (berth up). */
  stateDirClaimed?: boolean;
}): Promise<void> {
  const { server, token, concurrency, io, env, version } = options;
  const say = (line: string): void => void io.stderr.write(`berth: ${line}\n`);
  const settings = readSettings(env);
  const jobSettings = readWorkerJobSettings(env);
  for (const warning of jobSettings.warnings) say(`warning: ${warning}`);
  checkMountSources([
    ...jobSettings.mounts.all,
    ...jobSettings.mounts.readOnly,
    ...jobSettings.mounts.writeOnly,
  ]);
  // Read once: checked against the engine at start, then given to every job.
  const runtime = namedSetting(env, 'BERTH_WORKER_RUNTIME', 'SPACELIFT_WORKER_RUNTIME');
  const network = namedSetting(env, 'BERTH_WORKER_NETWORK', 'SPACELIFT_WORKER_NETWORK');
  const engine = EngineClient.fromEnv(env);
  const executor = new DockerExecutor(engine, {
    jobUsers: new FileJobUserCache(path.join(settings.stateDir, 'image-users')),
    workspaceRoot: workspaceRoot(settings),
    workspace: readWorkspaceDelivery(env),
  });
  // berth up claims it before its server starts (a second one then says so before anything).
  const releaseStateDir = options.stateDirClaimed
    ? () => undefined
    : claimStateDir(settings.stateDir);
  const repositories = new RepositoryCache({
    dir: path.join(settings.stateDir, 'repositories'),
    checkoutsDir: path.join(settings.stateDir, 'checkouts'),
    owner: currentLauncherId(),
    isOwnerAlive: isLauncherAlive,
    env,
  });
  try {
    await engine.ping();
    // A runtime or network the engine does not have would fail every run this worker takes (the
    // pool's queue emptied into FAILED by one host): said now, before it registers.
    await checkJobPlacement(engine, runtime, network);
    const removed = await executor.removeOrphans(isLauncherAlive, new Date());
    if (removed.length > 0)
      io.stderr.write(
        `berth: removed ${removed.length} container(s) left by a worker that died: ${removed.join(', ')}\n`,
      );
    // The state directory is this process's (claimed above): checkouts in it are of the past.
    const checkouts = await repositories.clearCheckouts();
    if (checkouts > 0)
      say(`removed ${checkouts} checkout(s) left by an earlier run of this worker that died`);
    const engineRelease = (await engine.version()).release;
    const idFile = path.join(settings.stateDir, 'worker-id');
    let workerId: string | undefined;
    try {
      workerId = readFileSync(idFile, 'utf8').trim() || undefined;
    } catch {
      workerId = undefined;
    }
    const logLimit = parseByteSize(env.BERTH_LOG_LIMIT?.trim() || '4MiB');
    const worker = new Worker({
      protocol: new HttpWorkerProtocol(server, token, fetchTrusting(options.cas ?? null)),
      executor,
      concurrency,
      settings: {
        timeoutMs: duration(
          'run timeout',
          settingOf(env, 'BERTH_LAUNCHER_RUN_TIMEOUT', 'SPACELIFT_LAUNCHER_RUN_TIMEOUT') ?? '70m',
        ),
        logsTimeoutMs: duration(
          'logs timeout',
          settingOf(env, 'BERTH_LAUNCHER_LOGS_TIMEOUT', 'SPACELIFT_LAUNCHER_LOGS_TIMEOUT') ?? '7m',
        ),
        graceMs: 30_000,
        pullTimeoutMs: 10 * 60_000,
        pidsLimit: 1024,
        network: network.value ?? 'bridge',
        runtime: runtime.value,
        pullPolicy: 'auto',
        logLimitBytes: 'bytes' in logLimit ? logLimit.bytes : 4 * 1024 * 1024,
        // As the server's limit (the same variable): a plan that the server would refuse fails here.
        savedWorkspaceLimitBytes:
          savedWorkspaceLimit(env.BERTH_SAVED_WORKSPACE_LIMIT?.trim()) ??
          DEFAULT_SAVED_WORKSPACE_LIMIT,
      },
      dockerConfig: dockerConfigDirFrom(env),
      env,
      stateDir: settings.stateDir,
      defaultRunnerImage:
        settingOf(env, 'BERTH_DEFAULT_RUNNER_IMAGE', 'SPACELIFT_DEFAULT_RUNNER_IMAGE') ??
        settings.defaultRunnerImage,
      launcherId: currentLauncherId(),
      berthVersion: version,
      engineVersion: engineRelease === '?' ? 'unknown' : engineRelease,
      workerId,
      buildRunnerImage: (image, onLine) => buildRunnerImage(engine, image, onLine),
      jobSettings,
      repositories,
      say,
      ...(options.tokenFix ? { tokenFix: options.tokenFix } : {}),
    });
    // From before the registration: a signal as it registers drains it too (the default action
    // would end the process after the server listed it, and it would show IDLE, not OFFLINE).
    const onTerm = (): void => worker.drain();
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onTerm);
    try {
      await worker.start().catch((err: unknown) => {
        throw registrationRefused(server, err);
      });
      // The state directory exists: claimStateDir made it.
      if (worker.id) {
        writeFileSync(idFile, `${worker.id}\n`, { mode: 0o600 });
      }
      await worker.serve();
      await worker.leave();
    } finally {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onTerm);
    }
    io.stderr.write('berth: worker stopped\n');
  } finally {
    releaseStateDir();
    engine.close();
  }
}

/** An extra mount's host path must exist: the engine would otherwise fail every run with it. */
function checkMountSources(mounts: ExtraMount[]): void {
  for (const mount of mounts) {
    if (!existsSync(mount.source))
      throw new BerthError(
        'BERTH_USAGE',
        `the extra mount ${mount.source}:${mount.target} names ${mount.source}, which does not exist on this machine`,
        {
          hint: 'Create the directory (or file), or fix BERTH_WORKER_EXTRA_MOUNTS (or its _RO_/_WO_ form).',
        },
      );
  }
}

/** A setting of berth's or the reference's name (settingOf), with the name the user set. */
interface NamedSetting {
  name: string;
  value: string | undefined;
}

function namedSetting(env: NodeJS.ProcessEnv, ours: string, theirs: string): NamedSetting {
  return { name: env[ours]?.trim() ? ours : theirs, value: settingOf(env, ours, theirs) };
}

/** Refuses a runtime the engine has not registered, or a network it does not have. */
async function checkJobPlacement(
  engine: EngineClient,
  { name: runtimeName, value: runtime }: NamedSetting,
  { name: networkName, value: network }: NamedSetting,
): Promise<void> {
  // A containerd shim's name (io.containerd.runsc.v1) needs no registration on Docker 23 and later.
  if (runtime && !runtime.includes('.')) {
    const info = await engine.json<{ Runtimes?: Record<string, unknown> }>('GET', '/info');
    const runtimes = Object.keys(info.Runtimes ?? {});
    if (!runtimes.includes(runtime))
      throw new BerthError(
        'BERTH_USAGE',
        `${runtimeName}=${runtime}: the Docker engine has no runtime of that name (it has ${runtimes.join(', ') || 'none'}), so every run would fail`,
        {
          hint: `Install ${runtime} and register it under "runtimes" in the engine's daemon.json (then restart the engine), or set ${runtimeName} to one it has; \`berth doctor --runtime ${runtime}\` checks it.`,
        },
      );
  }
  // (bridge, host and none are built in; container:ID names another container's.)
  if (
    network &&
    !['bridge', 'host', 'none', 'default'].includes(network) &&
    !network.includes(':')
  ) {
    try {
      await engine.json('GET', `/networks/${encodeURIComponent(network)}`);
    } catch (err) {
      if (!(err instanceof DockerApiError && err.status === 404)) throw err;
      throw new BerthError(
        'BERTH_USAGE',
        `${networkName}=${network}: the Docker engine has no network of that name, so every run would fail`,
        {
          hint: `Create it (\`docker network create ${network}\`), or set ${networkName} to one the engine has (\`docker network ls\`); bridge is the default.`,
        },
      );
    }
  }
}

/**
 * Takes the worker's state directory for this process: two workers on one directory would share
 * one worker id (one line in the list, one drain, each other's goodbye) and one repository cache.
 * A claim whose process is gone, or that a copy brought from another machine, is taken over.
 * Returns what gives the directory back.
 */
export function claimStateDir(
  stateDir: string,
  hint = 'Give each worker on a machine its own state directory: BERTH_STATE_DIR=DIR berth worker …',
): () => void {
  return claimDirectory(stateDir, {
    file: 'worker.owner',
    holder: 'berth worker',
    what: 'state directory',
    setting: 'BERTH_STATE_DIR',
    hint,
  });
}
