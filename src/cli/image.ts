/** `berth image check REF`: what a job on a pool would be allowed to do with an image, and why. */
import type { Command } from 'commander';
import {
  BerthError,
  EXIT_CODES,
  coerceError,
  exitCodeForError,
  type ErrorCode,
} from '../domain/errors.js';
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
import { errorText, type Output } from './render.js';

type Step = 'reference' | 'policy' | 'credentials' | 'registry check';

/** What `berth image check` found; `--json` prints it as it is. */
interface Report {
  input: string;
  pool: PoolKind;
  normalised?: string;
  registry?: string;
  repository?: string;
  rule?: string | null;
  ruleSet?: string[] | null;
  allowed?: boolean;
  reason?: string;
  credentials?: string;
  credentialSource?: string;
  digest?: string;
  pinned?: string;
  error?: { code: ErrorCode; message: string; hint?: string; part?: string };
  decidedBy?: Step;
}

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
  const report: Report = { input: ref, pool };
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
  report.decidedBy = decidingStep(report, opts.registryCheck);
  if (opts.json) {
    io.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    io.stdout.write(humanReport(report, opts.registryCheck));
    const error = report.error;
    // The error as `berth run` shows it, on stderr.
    if (error)
      io.stderr.write(
        errorText(
          new BerthError(error.code, error.message, error.hint ? { hint: error.hint } : {}),
        ),
      );
  }
  return code;
}

/** The codes of failures in finding the credentials (before the registry is asked). */
const CREDENTIAL_ERRORS: readonly string[] = [
  'BERTH_CREDENTIALS_INVALID',
  'BERTH_CREDENTIAL_HELPER_MISSING',
  'BERTH_CREDENTIAL_HELPER_FAILED',
  'BERTH_ECR_NO_CREDENTIALS',
  'BERTH_ECR_ACCESS_DENIED',
  'BERTH_ECR_FAILED',
];

/** Which step decided: the one that refused, or the last one made when all passed. */
function decidingStep(report: Report, registryCheck: boolean): Step {
  const error = report.error;
  if (error?.code === 'BERTH_IMAGE_INVALID') return 'reference';
  if (report.reason !== undefined && !error && report.allowed === false) return 'policy';
  if (error && CREDENTIAL_ERRORS.includes(error.code)) return 'credentials';
  if (error || registryCheck) return 'registry check';
  return 'policy';
}

function humanReport(report: Report, registryCheck: boolean): string {
  const lines: string[] = [];
  const line = (key: string, value: string | null | undefined): void => {
    if (value) lines.push(`${key.padEnd(16)} ${value}`);
  };
  line('image', report.input);
  line('normalised', report.normalised);
  line('pool', report.pool);
  line('registry', report.registry);
  line('repository', report.repository);
  if (report.reason !== undefined) {
    const policyAllowed = report.rule !== null || report.pool === 'private';
    line('policy', `${policyAllowed ? 'allows' : 'refuses'}: ${report.reason}`);
  }
  const ruleSet = report.ruleSet;
  if (ruleSet) {
    lines.push(`${'allow-list'.padEnd(16)} ${ruleSet.length} entries`);
    for (const rule of ruleSet) lines.push(`${''.padEnd(16)} - ${rule}`);
  }
  line('credentials', report.credentialSource ?? report.credentials);
  line('digest', report.digest);
  line('pinned', report.pinned);
  const error = report.error;
  const step = report.decidedBy;
  let verdict: string;
  if (error || report.allowed === false) {
    const by = step === 'reference' ? ': not a valid image reference' : ` by the ${step}`;
    verdict = `REFUSED${by}${error ? ` [${error.code}]` : ''}`;
  } else if (registryCheck) {
    verdict = 'ALLOWED: the policy, the credentials and the registry check all passed';
  } else {
    verdict = 'ALLOWED by the policy and the credentials; the registry was not asked';
  }
  line('verdict', verdict);
  return `${lines.join('\n')}\n`;
}
