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
import { DockerExecutor } from '../executor/docker/docker-executor.js';
import { EngineClient } from '../executor/docker/engine-client.js';
import type { ImageRequest, PullPolicy } from '../executor/executor.js';
import {
  publicEcrAccountsFrom,
  resolveImageAccess,
  type ImageAccessSettings,
} from '../launcher/image-access.js';
import { imagePolicyFor } from '../launcher/plan-run.js';
import { findLocalOnlyImage } from '../launcher/prepare-image.js';
import { dockerConfigDirFrom } from '../registry/docker-config.js';
import { errorText, type Output } from './render.js';
import { PULL_POLICIES } from './run-options.js';

type Step = 'reference' | 'policy' | 'local image check' | 'credentials' | 'registry check';

/** What `berth image check` found; `--json` prints it as it is. */
interface Report {
  input: string;
  pool: PoolKind;
  normalised?: string;
  registry?: string;
  repository?: string;
  rule?: string | null;
  ruleSet?: string[] | null;
  /** What the pool's policy alone says, and why. */
  policyAllowed?: boolean;
  policyReason?: string;
  /** The pull policy a run would use (--pull, else the default for the pool and reference). */
  pull?: PullPolicy;
  /** What the engine has under the reference, as far as the decision needs it. */
  engine?: string;
  /** The verdict, and the reason for it (the refusal's, when refused). */
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
  pull?: string;
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
      'show whether a pool may run an image, deciding as `berth run --image REF` would: normalised reference, registry, allow-list rule, local image, credentials, registry check',
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
    .option(
      '--pull <policy>',
      'always | if-not-present | never, as for berth run (default: always for tags on private pools, else if-not-present)',
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
  if (opts.pull !== undefined && !PULL_POLICIES.includes(opts.pull as PullPolicy)) {
    throw new BerthError(
      'BERTH_USAGE',
      `--pull ${JSON.stringify(opts.pull)}: use one of ${PULL_POLICIES.join(', ')}`,
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
  let code: number;
  if (!parsed.ok) {
    const error = new BerthError('BERTH_IMAGE_INVALID', parsed.error.message);
    code = refuse(report, 'reference', error);
    report.error = { ...(report.error as NonNullable<Report['error']>), part: parsed.error.part };
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
      policyAllowed: decision.allowed,
      policyReason: decision.reason,
      credentials: decision.credentials,
    });
    if (!decision.allowed) {
      code = refuse(report, 'policy', null, decision.reason);
    } else {
      const { pullPolicy, imageAccess } = imagePolicyFor(ref, {
        pool,
        pullPolicy: (opts.pull ?? 'auto') as PullPolicy | 'auto',
        allowList: [...allowList],
        dockerConfig,
        env,
      });
      report.pull = pullPolicy;
      const engine = EngineClient.fromEnv(env);
      try {
        code = await checkAccess(ref, report, {
          pullPolicy,
          imageAccess,
          registryCheck: opts.registryCheck,
          executor: new DockerExecutor(engine),
        });
      } finally {
        engine.close();
      }
    }
  }
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

/** Records a refusal by `step`; the reason is the error's message unless given. */
function refuse(report: Report, step: Step, error: BerthError | null, reason?: string): number {
  Object.assign(report, {
    allowed: false,
    reason: reason ?? error?.message,
    decidedBy: step,
    ...(error ? { error: { code: error.code, message: error.message, hint: error.hint } } : {}),
  });
  return error ? exitCodeForError(error) : EXIT_CODES.image;
}

/**
 * The steps after the policy, in the order and with the code a run takes them
 * (launcher/prepare-image.ts, launcher/plan-run.ts): a local-only image, or the engine's copy
 * when a private pool never pulls, is used without a registry check; otherwise the credentials
 * and the registry decide.
 */
async function checkAccess(
  ref: string,
  report: Report,
  step: {
    pullPolicy: PullPolicy;
    imageAccess: ImageAccessSettings | null;
    registryCheck: boolean;
    executor: DockerExecutor;
  },
): Promise<number> {
  const { executor, imageAccess } = step;
  if (!imageAccess) {
    // A private pool told never to pull runs the engine's copy, whatever its origin.
    try {
      await executor.prepareImage(engineCopy(ref), () => undefined);
    } catch (err) {
      return refuse(report, 'local image check', coerceError(err));
    }
    report.engine = 'has it';
    return allow(
      report,
      'local image check',
      `the pull policy never on a private pool runs the engine's copy of ${ref} without a registry check`,
    );
  }
  try {
    const local = await findLocalOnlyImage({
      image: ref,
      imageAccess,
      executor,
      runnerImageFallback: false,
    });
    if (local) {
      report.engine = 'has it with no registry origin (built or loaded here, never pulled)';
      return allow(report, 'local image check', local.warning);
    }
    report.engine = 'has no local-only image under this reference';
  } catch (err) {
    const error = coerceError(err);
    if (error.kind !== 'infra') return refuse(report, 'local image check', error);
    // No engine to ask: the registry still decides for every image that is not local-only.
    report.engine = `not asked (${error.message}); a local-only image would be decided differently`;
  }
  if (!step.registryCheck) return allow(report, 'policy', report.policyReason ?? '');
  let pinned: string;
  try {
    const access = await resolveImageAccess(ref, imageAccess);
    Object.assign(report, {
      credentialSource: access.credentialSource,
      digest: access.digest,
      pinned: access.pinned,
    });
    pinned = access.pinned;
  } catch (err) {
    const error = coerceError(err);
    return refuse(
      report,
      CREDENTIAL_ERRORS.includes(error.code) ? 'credentials' : 'registry check',
      error,
    );
  }
  if (step.pullPolicy === 'never') {
    // The digest the registry answered must already be on the engine.
    try {
      await executor.prepareImage(engineCopy(pinned), () => undefined);
    } catch (err) {
      return refuse(report, 'local image check', coerceError(err));
    }
  }
  return allow(report, 'registry check', report.policyReason ?? '');
}

/** What a run with the pull policy never asks of the engine: its copy, or the reason why not. */
function engineCopy(reference: string): ImageRequest {
  return { reference, pullPolicy: 'never', pullTimeoutMs: 0, registryAuth: null };
}

function allow(report: Report, step: Step, reason: string): number {
  Object.assign(report, { allowed: true, reason, decidedBy: step });
  return EXIT_CODES.success;
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
  if (report.policyReason !== undefined) {
    line('policy', `${report.policyAllowed ? 'allows' : 'refuses'}: ${report.policyReason}`);
  }
  const ruleSet = report.ruleSet;
  if (ruleSet) {
    lines.push(`${'allow-list'.padEnd(16)} ${ruleSet.length} entries`);
    for (const rule of ruleSet) lines.push(`${''.padEnd(16)} - ${rule}`);
  }
  line('pull', report.pull);
  line('engine', report.engine);
  line('credentials', report.credentialSource ?? report.credentials);
  line('digest', report.digest);
  line('pinned', report.pinned);
  line('verdict', verdictOf(report, registryCheck));
  return `${lines.join('\n')}\n`;
}

function verdictOf(report: Report, registryCheck: boolean): string {
  const error = report.error;
  const step = report.decidedBy;
  if (!report.allowed) {
    const by = step === 'reference' ? ': not a valid image reference' : ` by the ${step}`;
    return `REFUSED${by}${error ? ` [${error.code}]` : ''}`;
  }
  if (step === 'local image check') {
    return report.pull === 'never' && report.pool === 'private'
      ? "ALLOWED: the engine's copy, used without a registry check (the pull policy is never)"
      : 'ALLOWED: a local image (built or loaded on this machine, never pulled), used without a registry check';
  }
  if (registryCheck) {
    return report.pull === 'never'
      ? "ALLOWED: the policy, the credentials and the registry check all passed, and the engine has the registry's digest"
      : 'ALLOWED: the policy, the credentials and the registry check all passed';
  }
  return 'ALLOWED by the policy and the credentials; the registry was not asked';
}
