/**
 * The worker's settings that come as environment variables, the pure part: the names berth knows
 * (so a misspelt one is reported with the name it was probably meant to be), the reference's
 * names beside berth's, and the parsing of name lists and extra mounts.
 */
import { BerthError } from './errors.js';
import { pathsOverlap } from './safe-path.js';

/** Where berth puts the job's workspace and its own scripts in the job's container. */
const WORKSPACE_DIR = '/mnt/workspace';
const CONTROL_DIR = '/berth';

/**
 * Where a tool's releases come from, as BERTH_TERRAFORM_NAME and BERTH_OPENTOFU_NAME
 * (workflow/tool-releases.ts reads them by these names only, so this list is all there are).
 */
export const RELEASE_SETTINGS = [
  'RELEASES_URL',
  'RELEASES_LAYOUT',
  'INDEX_URL',
  'SIGNING_KEY_FILE',
  'SIGNATURE_SUFFIX',
] as const;
export type ReleaseSetting = (typeof RELEASE_SETTINGS)[number];

/** Every BERTH_ variable berth itself reads from its environment (server, worker, berth run). */
export const KNOWN_BERTH_VARIABLES: readonly string[] = [
  'BERTH_SERVER',
  'BERTH_TOKEN',
  'BERTH_POOL_TOKEN',
  'BERTH_DATA_DIR',
  'BERTH_LISTEN',
  'BERTH_DATABASE_URL',
  'BERTH_DATABASE_POOL_SIZE',
  'BERTH_SECRETS_KEY',
  'BERTH_BLOB_DIR',
  'BERTH_CA_CERT',
  'BERTH_WORKER_LEASE_TIMEOUT',
  'BERTH_WORKER_FORGET_AFTER',
  'BERTH_STATE_DIR',
  'BERTH_KEEP_RUNS',
  'BERTH_DOCKER_CONFIG_DIR',
  'BERTH_DEFAULT_RUNNER_IMAGE',
  'BERTH_POOL_DEFAULT_RUNNER_IMAGE',
  'BERTH_PUBLIC_ALLOWED_REGISTRIES',
  'BERTH_PUBLIC_ECR_ACCOUNTS',
  'BERTH_PUBLIC_MEMORY_LIMIT',
  'BERTH_PUBLIC_CPU_LIMIT',
  'BERTH_TOOL_DIR',
  'BERTH_PLUGIN_CACHE_DIR',
  'BERTH_WORKSPACE',
  'BERTH_SAVED_WORKSPACE_LIMIT',
  'BERTH_LOG_LIMIT',
  'BERTH_METADATA_ADDRESS',
  'BERTH_WORKER_NETWORK',
  'BERTH_WORKER_RUNTIME',
  'BERTH_LAUNCHER_RUN_TIMEOUT',
  'BERTH_LAUNCHER_LOGS_TIMEOUT',
  'BERTH_WHITELIST_ENVS',
  'BERTH_MASK_ENVS',
  'BERTH_WORKER_EXTRA_MOUNTS',
  'BERTH_WORKER_RO_EXTRA_MOUNTS',
  'BERTH_WORKER_WO_EXTRA_MOUNTS',
  'BERTH_GIT_CA_FILE',
  ...['TERRAFORM', 'OPENTOFU'].flatMap((tool) =>
    RELEASE_SETTINGS.map((name) => `BERTH_${tool}_${name}`),
  ),
];

/** Settings only `berth server` reads (`berth up` runs a server too): a worker's are ignored. */
export const SERVER_ONLY_VARIABLES: readonly string[] = [
  'BERTH_LISTEN',
  'BERTH_DATA_DIR',
  'BERTH_DATABASE_URL',
  'BERTH_DATABASE_POOL_SIZE',
  'BERTH_SECRETS_KEY',
  'BERTH_BLOB_DIR',
  'BERTH_WORKER_LEASE_TIMEOUT',
  'BERTH_WORKER_FORGET_AFTER',
];

/**
 * One warning line for the server's settings set in a worker's environment (the lease time and
 * the forget time are the server's, whatever their names say); null when there are none.
 */
export function serverOnlyVariablesWarning(env: Record<string, string | undefined>): string | null {
  const set = SERVER_ONLY_VARIABLES.filter((name) => (env[name] ?? '').trim() !== '');
  if (set.length === 0) return null;
  const one = set.length === 1;
  return `warning: ${set.join(', ')} ${one ? 'is a setting' : 'are settings'} of \`berth server\`, which \`berth worker\` does not read: set ${one ? 'it' : 'them'} where the server runs`;
}

/** Prefixes that are not settings of berth's: its own test suite's variables. */
const RESERVED_PREFIXES = ['BERTH_TEST_'];

/** Edit distance (insertions, deletions, substitutions), for "did you mean". */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}

/** The known name within `most` edits of `name` (the nearest), or null: none is that near. */
export function nearVariable(name: string, known: readonly string[], most: number): string | null {
  const nearest = nearestKnownVariable(name, known);
  return nearest !== name && distance(name, nearest) <= most ? nearest : null;
}

/** The known name nearest to `name`. */
export function nearestKnownVariable(
  name: string,
  known: readonly string[] = KNOWN_BERTH_VARIABLES,
): string {
  let best = known[0] as string;
  for (const candidate of known)
    if (distance(name, candidate) < distance(name, best)) best = candidate;
  return best;
}

/**
 * One warning line for the BERTH_ variables of `env` that berth does not read (a typo sets
 * nothing, silently, otherwise); null when there are none.
 */
export function unknownVariablesWarning(
  env: Record<string, string | undefined>,
  known = KNOWN_BERTH_VARIABLES,
): string | null {
  const unknown = Object.keys(env)
    .filter((name) => name.startsWith('BERTH_') && !known.includes(name))
    .filter((name) => !RESERVED_PREFIXES.some((prefix) => name.startsWith(prefix)))
    .sort();
  if (unknown.length === 0) return null;
  const named = unknown.map(
    (name) => `${name} (did you mean ${nearestKnownVariable(name, known)}?)`,
  );
  return `warning: berth does not know ${unknown.length === 1 ? 'the variable' : 'the variables'} ${named.join(', ')}; ${unknown.length === 1 ? 'it is' : 'they are'} ignored`;
}

/** A comma list of environment variable names (SPACELIFT_WHITELIST_ENVS and its like). */
export function parseNameList(text: string): { names: string[] } | { error: string } {
  const names = text
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const bad = names.find((n) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(n));
  if (bad !== undefined)
    return { error: `${JSON.stringify(bad)} is not an environment variable name` };
  return { names: [...new Set(names)] };
}

export interface ExtraMount {
  source: string;
  target: string;
  readOnly: boolean;
}

/**
 * `/host:/container[:ro|:rw],…` as the reference writes its extra mounts (read-write unless
 * `:ro`). Both paths absolute; never at, over or inside the workspace or /berth, which berth
 * fills itself (a bind mount there would receive the job's files on the host, or clash with
 * berth's own mount of them).
 */
export function parseExtraMounts(text: string): { mounts: ExtraMount[] } | { error: string } {
  const mounts: ExtraMount[] = [];
  for (const item of text
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean)) {
    const parts = item.split(':');
    const [source, target, mode] = parts;
    if (parts.length < 2 || parts.length > 3 || !source || !target)
      return { error: `${JSON.stringify(item)} is not /host/path:/container/path[:ro]` };
    if (mode !== undefined && mode !== 'ro' && mode !== 'rw')
      return {
        error: `${JSON.stringify(item)}: the mode is ro or rw, not ${JSON.stringify(mode)}`,
      };
    if (!source.startsWith('/') || !target.startsWith('/'))
      return { error: `${JSON.stringify(item)}: both paths must be absolute` };
    if (target.split('/').some((part) => part === '.' || part === '..'))
      return { error: `${JSON.stringify(item)}: the container path has . or ..; write it plainly` };
    // As the engine reads it: doubled slashes are one.
    const normal = `/${target.split('/').filter(Boolean).join('/')}`;
    const reserved = [WORKSPACE_DIR, CONTROL_DIR].find((dir) => pathsOverlap(normal, dir));
    if (reserved !== undefined)
      return {
        error: `${JSON.stringify(item)}: ${target} overlaps ${reserved === WORKSPACE_DIR ? "the job's workspace" : "berth's control directory"} (${reserved}), which berth fills itself (a mount at, above or inside it is refused); mount somewhere else, e.g. /mnt/extra`,
      };
    mounts.push({ source, target: normal, readOnly: mode === 'ro' });
  }
  return { mounts };
}

/** A setting under berth's name or the reference product's; both set differently is an error. */
export function settingOf(
  env: Record<string, string | undefined>,
  ours: string,
  theirs: string,
): string | undefined {
  const a = env[ours]?.trim() || undefined;
  const b = env[theirs]?.trim() || undefined;
  if (a && b && a !== b)
    throw new BerthError(
      'BERTH_USAGE',
      `${ours}=${a} and ${theirs}=${b} disagree; set one of them`,
      {
        hint: `Set ${ours} (berth's name) or ${theirs} (the reference's), not both.`,
      },
    );
  return a ?? b;
}

/** What a worker gives every job of its own: variables from its environment, and bind mounts. */
export interface WorkerJobSettings {
  /** Whitelisted variables of the worker's environment, by value. */
  env: Record<string, string>;
  /** Those of them that are masked: they go where secrets go, and never into a log. */
  secretEnv: Record<string, string>;
  mounts: { all: ExtraMount[]; readOnly: ExtraMount[]; writeOnly: ExtraMount[] };
  /** Lines for the worker's own output (a whitelisted variable that is not set, …). */
  warnings: string[];
}

/**
 * SPACELIFT_WHITELIST_ENVS / BERTH_WHITELIST_ENVS (variables of the worker passed into every
 * run), SPACELIFT_MASK_ENVS / BERTH_MASK_ENVS (which of those are masked) and the three extra
 * mount lists, checked: a bad value is an error naming the variable, never a silent default.
 */
export function readWorkerJobSettings(env: Record<string, string | undefined>): WorkerJobSettings {
  const list = (ours: string, theirs: string): string[] => {
    const text = settingOf(env, ours, theirs);
    if (text === undefined) return [];
    const parsed = parseNameList(text);
    if ('error' in parsed)
      throw new BerthError('BERTH_USAGE', `${ours}/${theirs}: ${parsed.error}`);
    return parsed.names;
  };
  const whitelist = list('BERTH_WHITELIST_ENVS', 'SPACELIFT_WHITELIST_ENVS');
  const masked = list('BERTH_MASK_ENVS', 'SPACELIFT_MASK_ENVS');
  const own = whitelist.find((name) => name.startsWith('BERTH_'));
  if (own)
    throw new BerthError(
      'BERTH_USAGE',
      `BERTH_WHITELIST_ENVS names ${own}: berth's own settings (its tokens among them) never go into jobs`,
      {
        hint: "Pass the value under another name: set it in the worker's environment as, e.g., MY_VALUE and whitelist that.",
      },
    );
  const warnings: string[] = [];
  const result: WorkerJobSettings = {
    env: {},
    secretEnv: {},
    mounts: { all: [], readOnly: [], writeOnly: [] },
    warnings,
  };
  for (const name of whitelist) {
    const value = env[name];
    if (value === undefined) {
      warnings.push(
        `BERTH_WHITELIST_ENVS names ${name}, which is not set here: runs do not get it`,
      );
      continue;
    }
    if (masked.includes(name)) result.secretEnv[name] = value;
    else result.env[name] = value;
  }
  for (const name of masked.filter((n) => !whitelist.includes(n)))
    warnings.push(
      `BERTH_MASK_ENVS names ${name}, which BERTH_WHITELIST_ENVS does not pass: nothing to mask`,
    );
  const mounts = (kind: keyof WorkerJobSettings['mounts'], infix: string): void => {
    const ours = `BERTH_WORKER_${infix}EXTRA_MOUNTS`;
    const theirs = `SPACELIFT_WORKER_${infix}EXTRA_MOUNTS`;
    const text = settingOf(env, ours, theirs);
    if (text === undefined) return;
    const parsed = parseExtraMounts(text);
    if ('error' in parsed)
      throw new BerthError('BERTH_USAGE', `${ours}/${theirs}: ${parsed.error}`);
    result.mounts[kind] = parsed.mounts;
  };
  mounts('all', '');
  mounts('readOnly', 'RO_');
  mounts('writeOnly', 'WO_');
  return result;
}

/**
 * The extra mounts of one container: the general ones, and the read-only runs' (a proposed run,
 * the plan of a tracked run that waits for confirmation) or the write runs' (an apply, a
 * destroy, a task, a tracked run planned and applied in one go), as the reference splits them.
 */
export function extraMountsFor(
  readsOnly: boolean,
  mounts: WorkerJobSettings['mounts'],
): ExtraMount[] {
  return [...mounts.all, ...(readsOnly ? mounts.readOnly : mounts.writeOnly)];
}

/**
 * A job's variables: the worker's whitelisted ones, then the stack's, which are more specific and
 * win (a name the stack sets is dropped from the worker's, plain or masked).
 */
export function jobVariables(
  worker: Pick<WorkerJobSettings, 'env' | 'secretEnv'>,
  stack: readonly { name: string; value: string; secret: boolean }[],
): { env: Record<string, string>; secretEnv: Record<string, string> } {
  const named = new Set(stack.map((v) => v.name));
  const without = (values: Record<string, string>): Record<string, string> =>
    Object.fromEntries(Object.entries(values).filter(([name]) => !named.has(name)));
  return {
    env: {
      ...without(worker.env),
      ...Object.fromEntries(stack.filter((v) => !v.secret).map((v) => [v.name, v.value])),
    },
    secretEnv: {
      ...without(worker.secretEnv),
      ...Object.fromEntries(stack.filter((v) => v.secret).map((v) => [v.name, v.value])),
    },
  };
}
