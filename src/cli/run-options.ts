/**
 * Turns `berth run`'s command-line values into a checked run description. Every problem found is
 * reported together, each naming the option and the value, before anything touches the engine.
 */
import { readFileSync } from 'node:fs';
import { BerthError } from '../domain/errors.js';
import { shellQuote } from '../domain/hook-script.js';
import { checkImageReference } from '../domain/image-reference.js';
import { parseByteSize, parseCpus, parseDuration } from '../domain/units.js';
import { DEFAULT_SAVED_WORKSPACE_LIMIT } from '../launcher/run-job.js';
import type { RunSettings } from '../launcher/plan-run.js';
import type { PullPolicy } from '../executor/executor.js';
import { POOL_KINDS, parseAllowList, type PoolKind } from '../domain/pool-policy.js';

export interface RawRunOptions {
  image?: string;
  env: string[];
  secretEnv: string[];
  /** Docker env-files (`--env-file`, `--secret-env-file`), read in order before the flags. */
  envFile?: string[];
  secretEnvFile?: string[];
  timeout: string;
  logsTimeout: string;
  grace: string;
  pullTimeout: string;
  cpus?: string;
  memory?: string;
  pidsLimit: string;
  network: string;
  runtime?: string;
  /** Unset: decided by the pool and the reference. */
  pull?: string;
  logLimit: string;
  savedWorkspaceLimit?: string;
  pool: string;
  allowedRegistries?: string;
}

/** The checked flags are the run's settings (launcher/plan-run.ts). */
export type CheckedRunOptions = RunSettings;

/** What --pull accepts; leaving it out is the documented default ('auto' inside berth). */
export const PULL_POLICIES: readonly PullPolicy[] = ['always', 'if-not-present', 'never'];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED_ENV = new Set(['HOME', 'PWD', 'OLDPWD', 'SHLVL']);

/**
 * `environment` is berth's own: `--env NAME` (no `=`) and a bare NAME in an env-file take the
 * value from it, as `docker run -e NAME` does, so a secret need not be on the command line.
 */
export function checkRunOptions(
  raw: RawRunOptions,
  environment: NodeJS.ProcessEnv = {},
): CheckedRunOptions {
  const problems: string[] = [];
  const duration = (option: string, text: string): number => {
    const parsed = parseDuration(text);
    if ('error' in parsed) {
      problems.push(`${option} ${JSON.stringify(text)}: ${parsed.error}`);
      return 0;
    }
    return parsed.ms;
  };
  /** One NAME=VALUE or NAME; `where` names the option or the file:line it came from. */
  const addPair = (
    out: Record<string, string>,
    where: string,
    value: string,
    secret: boolean,
  ): void => {
    const eq = value.indexOf('=');
    const name = eq < 0 ? value : value.slice(0, eq);
    const given = eq < 0 ? environment[name] : value.slice(eq + 1);
    if (!ENV_NAME.test(name)) {
      problems.push(
        `${where} ${JSON.stringify(name)}: a variable name has letters, digits and _ and does not start with a digit`,
      );
    } else if (RESERVED_ENV.has(name)) {
      problems.push(`${where} ${name}: berth sets ${name} itself for every job`);
    } else if (given === undefined) {
      // A secret's value on the command line is where `ps` and the shell's history see it.
      problems.push(
        secret
          ? `${where} ${name}: ${name} is not set in berth's environment; set it (export ${name}=…, or read -rs ${name} && export ${name}) or put it in a --secret-env-file`
          : `${where} ${name}: ${name} is not set in berth's environment; set it (export ${name}=…) or give ${name}=VALUE`,
      );
    } else {
      out[name] = given;
    }
  };
  const envPairs = (option: string, files: string[], values: string[]): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const file of files) {
      const lines = readEnvFile(`${option}-file`, file, problems);
      for (const { line, text } of lines)
        addPair(out, `${file}:${line}:`, text, option === '--secret-env');
    }
    for (const value of values) addPair(out, option, value, option === '--secret-env');
    return out;
  };

  const image = raw.image;
  const imageProblem = image === undefined ? null : checkImageReference(image);
  if (imageProblem) problems.push(`--image: ${imageProblem.message}`);
  const env = envPairs('--env', raw.envFile ?? [], raw.env);
  const secretEnv = envPairs('--secret-env', raw.secretEnvFile ?? [], raw.secretEnv);
  for (const name of Object.keys(secretEnv)) {
    if (name in env) problems.push(`--env and --secret-env both set ${name}; set it once`);
    if (secretEnv[name] === '')
      problems.push(`--secret-env ${name}: the value is empty, so there is nothing to mask`);
  }
  const pullPolicy = (raw.pull ?? 'auto') as PullPolicy | 'auto';
  if (raw.pull !== undefined && !PULL_POLICIES.includes(raw.pull as PullPolicy)) {
    problems.push(`--pull ${JSON.stringify(raw.pull)}: use one of ${PULL_POLICIES.join(', ')}`);
  }
  const checked: CheckedRunOptions = {
    image,
    env,
    secretEnv,
    timeoutMs: duration('--timeout', raw.timeout),
    logsTimeoutMs: duration('--logs-timeout', raw.logsTimeout),
    graceMs: duration('--grace', raw.grace),
    pullTimeoutMs: duration('--pull-timeout', raw.pullTimeout),
    pidsLimit: Number(raw.pidsLimit),
    network: raw.network,
    pullPolicy,
    logLimitBytes: 0,
    savedWorkspaceLimitBytes: DEFAULT_SAVED_WORKSPACE_LIMIT,
    pool: raw.pool as PoolKind,
    allowList: null,
  };
  if (!POOL_KINDS.includes(raw.pool as PoolKind)) {
    problems.push(`--pool ${JSON.stringify(raw.pool)}: use public or private`);
  }
  if (raw.allowedRegistries !== undefined) {
    const parsed = parseAllowList(raw.allowedRegistries);
    if ('error' in parsed) problems.push(`--allowed-registries: ${parsed.error}`);
    else checked.allowList = parsed.rules;
  }
  if (!Number.isInteger(checked.pidsLimit) || checked.pidsLimit < 16) {
    problems.push(
      `--pids-limit ${JSON.stringify(raw.pidsLimit)}: use a whole number of at least 16`,
    );
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(raw.network)) {
    problems.push(
      `--network ${JSON.stringify(raw.network)}: not a Docker network name (e.g. bridge, none, or one from \`docker network ls\`)`,
    );
  }
  if (raw.runtime !== undefined) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(raw.runtime)) {
      problems.push(
        `--runtime ${JSON.stringify(raw.runtime)}: not a runtime name (e.g. runc, runsc)`,
      );
    }
    checked.runtime = raw.runtime;
  }
  if (raw.cpus !== undefined) {
    const cpus = parseCpus(raw.cpus);
    if ('error' in cpus) problems.push(`--cpus: ${cpus.error}`);
    else checked.nanoCpus = cpus.nanoCpus;
  }
  if (raw.memory !== undefined) {
    const memory = parseByteSize(raw.memory);
    if ('error' in memory) problems.push(`--memory: ${memory.error}`);
    else checked.memoryBytes = memory.bytes;
  }
  const logLimit = parseByteSize(raw.logLimit);
  if ('error' in logLimit) problems.push(`--log-limit: ${logLimit.error}`);
  else if (logLimit.bytes < 1024)
    problems.push(`--log-limit ${JSON.stringify(raw.logLimit)}: keep at least 1KiB`);
  else checked.logLimitBytes = logLimit.bytes;

  if (raw.savedWorkspaceLimit !== undefined) {
    const limit = parseByteSize(raw.savedWorkspaceLimit);
    if ('error' in limit) problems.push(`--saved-workspace-limit: ${limit.error}`);
    else if (limit.bytes < 1024 * 1024)
      problems.push(
        `--saved-workspace-limit ${JSON.stringify(raw.savedWorkspaceLimit)}: allow at least 1MiB`,
      );
    else checked.savedWorkspaceLimitBytes = limit.bytes;
  }

  if (problems.length > 0) {
    // One rule for exit codes: the error's kind. An invalid image reference is an image error
    // (exit 3) wherever it is given, as in `berth image check`, also among other problems.
    throw new BerthError(
      imageProblem ? 'BERTH_IMAGE_INVALID' : 'BERTH_USAGE',
      problems.length === 1
        ? (problems[0] as string)
        : `${problems.length} problems with the options:\n  - ${problems.join('\n  - ')}`,
    );
  }
  return checked;
}

/**
 * The task's shell text from the words after `--`: one word is shell text as it stands (like
 * `sh -c`), several words are a command and its arguments, each kept intact.
 */
export function taskScript(words: readonly string[]): string {
  if (words.length === 1) return words[0] as string;
  return words.map(shellQuote).join(' ');
}

/**
 * Every secret value the options name, found without judging them (an unreadable file gives
 * nothing, an entry that is not NAME or NAME=VALUE is taken as a value): what masks the messages of errors raised before the options
 * were checked, or while they were. Includes values from berth's environment (`--secret-env
 * NAME`) and from `--secret-env-file`.
 */
export function secretValuesOf(
  raw: Pick<RawRunOptions, 'secretEnv' | 'secretEnvFile'>,
  environment: NodeJS.ProcessEnv,
): string[] {
  const entries = [...raw.secretEnv];
  for (const file of raw.secretEnvFile ?? []) {
    try {
      entries.push(...envFileEntries(readFileSync(file, 'utf8')).map((e) => e.text));
    } catch {
      // Reported by checkRunOptions; nothing to mask from it.
    }
  }
  return entries
    .map((entry) => {
      const eq = entry.indexOf('=');
      if (eq >= 0) return entry.slice(eq + 1);
      // NAME alone names a variable of berth's environment; anything else that is not a name
      // may be a value given by mistake, and is masked whole.
      return ENV_NAME.test(entry) ? environment[entry] : entry;
    })
    .filter((value): value is string => value !== undefined && value !== '');
}

/**
 * The entries of a Docker env-file: one NAME=VALUE or NAME per line, the value taken as it
 * stands (no quotes removed, as Docker does); blank lines and lines starting with # are skipped.
 */
export function envFileEntries(text: string): { line: number; text: string }[] {
  const entries: { line: number; text: string }[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const entry = raw.trimStart();
    if (entry === '' || entry.startsWith('#')) return;
    entries.push({ line: index + 1, text: entry });
  });
  return entries;
}

function readEnvFile(
  option: string,
  file: string,
  problems: string[],
): { line: number; text: string }[] {
  try {
    return envFileEntries(readFileSync(file, 'utf8'));
  } catch (err) {
    problems.push(
      `${option} ${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
    return [];
  }
}
