/** `berth image check REF`: what a job on a pool would be allowed to do with an image, and why. */
import type { Command } from 'commander';
import { BerthError, EXIT_CODES, coerceError, exitCodeForError } from '../domain/errors.js';
import { formatImageReference, parseImageReference } from '../domain/image-reference.js';
import {
  DEFAULT_PUBLIC_ALLOW_LIST,
  POOL_KINDS,
  decideImage,
  parseAllowList,
  type PoolKind,
} from '../domain/pool-policy.js';
import { publicEcrAccountsFrom, resolveImageAccess } from '../launcher/image-access.js';
import { dockerConfigDirFrom } from '../registry/docker-config.js';
import { ecrTokenFromSdk } from '../registry/ecr.js';
import type { Output } from './render.js';

interface CheckOptions {
  pool: string;
  allowedRegistries?: string;
  dockerConfigDir?: string;
  registryCheck: boolean;
  json?: boolean;
}

export function registerImage(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  setExit: (code: number) => void,
): void {
  const group = program.command('image').description('image policy');
  group
    .command('check')
    .description(
      'show whether a pool may run an image: normalised reference, registry, allow-list rule, credentials, registry check',
    )
    .argument('<ref>', 'image reference')
    .option('--pool <kind>', 'public | private', 'private')
    .option(
      '--allowed-registries <list>',
      'public pools: allow-list (default: $BERTH_PUBLIC_ALLOWED_REGISTRIES or the built-in list)',
    )
    .option(
      '--docker-config-dir <dir>',
      'Docker config directory with registry credentials (private pools)',
    )
    .option('--no-registry-check', 'decide on policy and credentials only; do not ask the registry')
    .option('--json', 'print one JSON object')
    .action(async (ref: string, opts: CheckOptions) => {
      setExit(await check(ref, opts, io, env));
    });
}

async function check(
  ref: string,
  opts: CheckOptions,
  io: Output,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  if (!POOL_KINDS.includes(opts.pool as PoolKind)) {
    throw new BerthError(
      'BERTH_USAGE',
      `--pool ${JSON.stringify(opts.pool)}: use public or private`,
    );
  }
  const pool = opts.pool as PoolKind;
  const listText = opts.allowedRegistries ?? env.BERTH_PUBLIC_ALLOWED_REGISTRIES;
  let allowList = DEFAULT_PUBLIC_ALLOW_LIST;
  if (listText !== undefined) {
    const parsed = parseAllowList(listText);
    if ('error' in parsed)
      throw new BerthError('BERTH_USAGE', `allowed registries: ${parsed.error}`);
    allowList = parsed.rules;
  }
  const dockerConfig = pool === 'private' ? dockerConfigDirFrom(env, opts.dockerConfigDir) : null;
  const parsed = parseImageReference(ref);
  const report: Record<string, unknown> = { input: ref, pool };
  let code: number = EXIT_CODES.success;
  if (!parsed.ok) {
    Object.assign(report, {
      allowed: false,
      error: {
        code: 'BERTH_IMAGE_INVALID',
        message: parsed.error.message,
        part: parsed.error.part,
      },
    });
    code = EXIT_CODES.image;
  } else {
    const publicEcrAccounts = publicEcrAccountsFrom(env);
    const decision = decideImage(
      parsed.reference,
      pool,
      allowList,
      dockerConfig !== null,
      publicEcrAccounts,
    );
    Object.assign(report, {
      normalised: formatImageReference(parsed.reference),
      registry: parsed.reference.registry,
      repository: parsed.reference.repository,
      rule: decision.rule,
      ruleSet: pool === 'public' ? allowList.map((r) => r.pattern) : null,
      allowed: decision.allowed,
      reason: decision.reason,
      credentials: decision.credentials,
    });
    if (!decision.allowed) {
      code = EXIT_CODES.image;
    } else if (opts.registryCheck) {
      try {
        const access = await resolveImageAccess(ref, {
          pool,
          allowList,
          dockerConfig,
          env,
          ecrToken: ecrTokenFromSdk,
          publicEcrAccounts,
        });
        Object.assign(report, {
          credentialSource: access.credentialSource,
          digest: access.digest,
          pinned: access.pinned,
        });
      } catch (err) {
        const error = coerceError(err);
        Object.assign(report, {
          allowed: false,
          error: { code: error.code, message: error.message, hint: error.hint },
        });
        code = exitCodeForError(error);
      }
    }
  }
  if (opts.json) {
    io.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    const lines = Object.entries(report)
      .filter(([, value]) => value !== null && value !== undefined)
      .map(
        ([key, value]) =>
          `${key.padEnd(16)} ${typeof value === 'string' ? value : JSON.stringify(value)}`,
      );
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  return code;
}
