/**
 * `berth doctor`: checks this machine the way a worker of a pool sees it, before it runs a
 * tenant's job: the engine, the container runtime, and whether job containers can reach the
 * cloud's instance metadata address (which hands out the machine's own credentials).
 */
import type { Command } from 'commander';
import pc from 'picocolors';
import { BerthError } from '../domain/errors.js';
import { POOL_KINDS, type PoolKind } from '../domain/pool-policy.js';
import { DockerExecutor } from '../executor/docker/docker-executor.js';
import { EngineClient } from '../executor/docker/engine-client.js';
import { currentLauncherId } from '../launcher/launcher-identity.js';
import { METADATA_ADDRESS, probeMetadataAccess } from '../launcher/metadata-probe.js';
import { readSettings, readWorkspaceDelivery, workspaceRoot } from '../launcher/runner-image.js';
import type { Output } from './render.js';

interface DoctorOptions {
  pool: string;
  image?: string;
  network: string;
  runtime?: string;
  json?: boolean;
}

interface Check {
  name: string;
  status: 'ok' | 'warning' | 'skipped';
  detail: string;
  fix?: string;
}

export function registerDoctor(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  setExit: (code: number) => void,
): void {
  program
    .command('doctor')
    .description(
      "check this machine as a worker would: the engine, the runtime, and whether job containers reach the cloud's metadata address",
    )
    .option('--pool <kind>', 'public | private: the pool this machine serves', 'private')
    .option(
      '--image <ref>',
      'image the checks run in (present on this engine; default: the default runner image)',
    )
    .option('--network <name>', 'Docker network of job containers', 'bridge')
    .option('--runtime <name>', 'OCI runtime of job containers, e.g. runsc')
    .option('--json', 'print one JSON object')
    .action(async (opts: DoctorOptions) => {
      setExit(await doctor(opts, io, env));
    });
}

async function doctor(opts: DoctorOptions, io: Output, env: NodeJS.ProcessEnv): Promise<number> {
  if (!POOL_KINDS.includes(opts.pool as PoolKind)) {
    throw new BerthError(
      'BERTH_USAGE',
      `--pool ${JSON.stringify(opts.pool)}: use public or private`,
    );
  }
  const engine = EngineClient.fromEnv(env);
  const checks: Check[] = [];
  try {
    await engine.ping();
    checks.push({
      name: 'engine',
      status: 'ok',
      detail: `${(await engine.version()).text} at ${engine.endpoint.display}`,
    });
    const info = await engine.json<{ Runtimes?: Record<string, unknown> }>('GET', '/info');
    const runtimes = Object.keys(info.Runtimes ?? {});
    if (opts.runtime && !runtimes.includes(opts.runtime)) {
      checks.push({
        name: 'runtime',
        status: 'warning',
        detail: `runtime ${opts.runtime} is not registered with the engine (it has ${runtimes.join(', ')})`,
        fix: 'Install it and register it under "runtimes" in daemon.json, then restart the engine.',
      });
    } else if (opts.pool === 'public' && !opts.runtime) {
      checks.push({
        name: 'runtime',
        status: 'warning',
        detail: `job containers use the engine's default runtime; ${runtimes.includes('runsc') ? 'runsc (gVisor) is registered but not chosen' : 'no sandboxing runtime such as runsc (gVisor) is registered'}`,
        fix: 'On a public pool, run jobs under gVisor: install runsc, register it with the engine, and pass --runtime runsc (see docs/security.md).',
      });
    } else {
      checks.push({
        name: 'runtime',
        status: 'ok',
        detail: opts.runtime ? `${opts.runtime} is registered` : "the engine's default",
      });
    }
    checks.push(await workspaceCheck(engine, env));
    const image = opts.image ?? readSettings(env).defaultRunnerImage;
    const executor = new DockerExecutor(engine);
    const present = await executor.inspectImage(image);
    const address = env.BERTH_METADATA_ADDRESS?.trim() || METADATA_ADDRESS;
    if (!present) {
      checks.push({
        name: 'metadata',
        status: 'skipped',
        detail: `image ${image} is not on this engine, so no container could be started to check ${address}`,
        fix: 'Pass --image with an image this engine has (e.g. the pool default runner image).',
      });
    } else {
      const probe = await probeMetadataAccess(executor, {
        image: present.Id,
        network: opts.network,
        runtime: opts.runtime,
        launcherId: currentLauncherId(),
        address,
      });
      checks.push(
        probe.reachable === true
          ? {
              name: 'metadata',
              status: 'warning',
              detail: `JOB CONTAINERS CAN REACH THE INSTANCE METADATA ADDRESS ${address} (network ${opts.network}): a job can take this machine's own cloud credentials`,
              fix: `Block it for containers, e.g. \`iptables -I DOCKER-USER -d ${address.split(':')[0]} -j REJECT\`, or on AWS require IMDSv2 with a hop limit of 1; give workers a dedicated identity with only the permissions jobs need (docs/security.md).`,
            }
          : probe.reachable === false
            ? {
                name: 'metadata',
                status: 'ok',
                detail: `job containers cannot reach ${address}`,
              }
            : {
                name: 'metadata',
                status: 'skipped',
                detail: `image ${image} has none of curl, nc or wget to try ${address}`,
                fix: 'Pass --image with an image that has curl, nc or wget.',
              },
      );
    }
  } finally {
    engine.close();
  }
  const warnings = checks.filter((c) => c.status === 'warning').length;
  if (opts.json) {
    io.stdout.write(`${JSON.stringify({ pool: opts.pool, checks, warnings })}\n`);
  } else {
    for (const check of checks) {
      const mark =
        check.status === 'ok'
          ? pc.green('ok')
          : check.status === 'warning'
            ? pc.yellow(pc.bold('WARNING'))
            : pc.dim('skipped');
      io.stdout.write(`${check.name.padEnd(9)} ${mark}  ${check.detail}\n`);
      if (check.fix) io.stdout.write(`${''.padEnd(9)} ${pc.bold('fix:')} ${check.fix}\n`);
    }
  }
  return warnings > 0 ? 1 : 0;
}

/** How jobs' workspaces reach their containers here (BERTH_WORKSPACE), and why not mounted. */
async function workspaceCheck(engine: EngineClient, env: NodeJS.ProcessEnv): Promise<Check> {
  const root = workspaceRoot(readSettings(env));
  try {
    const executor = new DockerExecutor(engine, {
      workspaceRoot: root,
      workspace: readWorkspaceDelivery(env),
    });
    const delivery = await executor.workspaceDelivery();
    return {
      name: 'workspace',
      status: 'ok',
      detail: delivery.mount
        ? `mounted into job containers from ${delivery.root}`
        : `copied into job containers through the engine: ${delivery.reason}`,
    };
  } catch (err) {
    if (!(err instanceof BerthError)) throw err;
    return { name: 'workspace', status: 'warning', detail: err.message, fix: err.hint };
  }
}
