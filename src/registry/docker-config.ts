/**
 * Registry credentials from a Docker config directory, read as the Docker CLI reads
 * `config.json`: `credHelpers` for the registry first, then `credsStore`, then `auths`. A helper
 * that is missing, fails or answers garbage is an error naming it and the registry; berth never
 * falls back to other credentials, and never to the invoking user's ~/.docker.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import { isDockerHub } from '../domain/image-reference.js';
import { registryServerUrl, type RegistryCredentials } from './registry-client.js';

export interface DockerConfigDir {
  dir: string;
  /** Where the directory was named: a setting or a flag, for messages. */
  origin: string;
}

/**
 * The configured directory: `--docker-config-dir`, else BERTH_DOCKER_CONFIG_DIR, else the
 * reference product's SPACELIFT_DOCKER_CONFIG_DIR. Both variables set to different values is an
 * error. Null: no credentials at all.
 */
export function dockerConfigDirFrom(env: NodeJS.ProcessEnv, flag?: string): DockerConfigDir | null {
  if (flag) return { dir: path.resolve(flag), origin: '--docker-config-dir' };
  const ours = env.BERTH_DOCKER_CONFIG_DIR?.trim();
  const theirs = env.SPACELIFT_DOCKER_CONFIG_DIR?.trim();
  if (ours && theirs && path.resolve(ours) !== path.resolve(theirs)) {
    throw new BerthError(
      'BERTH_USAGE',
      `BERTH_DOCKER_CONFIG_DIR=${ours} and SPACELIFT_DOCKER_CONFIG_DIR=${theirs} name different directories`,
      {
        hint: 'Set only one of them (SPACELIFT_DOCKER_CONFIG_DIR is read for users moving over), or set both to the same directory.',
      },
    );
  }
  if (ours) return { dir: path.resolve(ours), origin: 'BERTH_DOCKER_CONFIG_DIR' };
  if (theirs) return { dir: path.resolve(theirs), origin: 'SPACELIFT_DOCKER_CONFIG_DIR' };
  return null;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface ConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

export interface FoundCredentials {
  credentials: RegistryCredentials | null;
  /** Where they came from, never what they are: `auths["ghcr.io"] in /x/config.json`. */
  source: string;
}

/** `https://index.docker.io/v1/` → `docker.io`; `https://ghcr.io` → `ghcr.io`. */
export function normaliseConfigKey(key: string): string {
  const host = key
    .trim()
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/.*$/, '')
    .toLowerCase();
  return isDockerHub(host) ? 'docker.io' : host;
}

function sameRegistry(key: string, registry: string): boolean {
  return normaliseConfigKey(key) === normaliseConfigKey(registry);
}

async function readConfig(
  config: DockerConfigDir,
): Promise<{ file: string; parsed: ConfigFile } | null> {
  const file = path.join(config.dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BerthError(
      'BERTH_CREDENTIALS_INVALID',
      `cannot read ${file} (named by ${config.origin}): ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      {
        cause: err,
      },
    );
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not a JSON object');
    return { file, parsed: parsed };
  } catch (err) {
    throw new BerthError(
      'BERTH_CREDENTIALS_INVALID',
      `${file} (named by ${config.origin}) is not valid JSON: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

export interface HelperRunner {
  (
    helper: string,
    serverUrl: string,
    env: NodeJS.ProcessEnv,
  ): Promise<{ code: number | null; stdout: string; stderr: string; missing: boolean }>;
}

/** Runs `docker-credential-NAME get` with the server URL on stdin, as the Docker CLI does. */
export const runHelper: HelperRunner = (helper, serverUrl, env) =>
  new Promise((resolve) => {
    const child = spawn(`docker-credential-${helper}`, ['get'], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: err.message, missing: err.code === 'ENOENT' });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, missing: false });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(serverUrl);
  });

/** Looks up the credentials for one registry. Never throws with a secret in the message. */
export async function credentialsFor(
  config: DockerConfigDir,
  registry: string,
  env: NodeJS.ProcessEnv,
  helperRunner: HelperRunner = runHelper,
): Promise<FoundCredentials> {
  const loaded = await readConfig(config);
  if (!loaded)
    return {
      credentials: null,
      source: `no config.json in ${config.dir} (named by ${config.origin})`,
    };
  const { file, parsed } = loaded;
  const helperKey = Object.keys(parsed.credHelpers ?? {}).find((key) =>
    sameRegistry(key, registry),
  );
  if (helperKey !== undefined) {
    const helper = parsed.credHelpers?.[helperKey] as string;
    return fromHelper(
      helper,
      `credHelpers["${helperKey}"] in ${file}`,
      registry,
      env,
      helperRunner,
    );
  }
  if (parsed.credsStore) {
    return fromHelper(parsed.credsStore, `credsStore in ${file}`, registry, env, helperRunner);
  }
  const authKey = Object.keys(parsed.auths ?? {}).find((key) => sameRegistry(key, registry));
  if (authKey === undefined)
    return { credentials: null, source: `no entry for ${registry} in ${file}` };
  const entry = parsed.auths?.[authKey] ?? {};
  const where = `auths["${authKey}"] in ${file}`;
  const credentials = fromAuthEntry(entry, where);
  return { credentials, source: where };
}

function fromAuthEntry(entry: AuthEntry, where: string): RegistryCredentials | null {
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (entry.registrytoken) return { registryToken: entry.registrytoken };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) {
      throw new BerthError(
        'BERTH_CREDENTIALS_INVALID',
        `${where}: "auth" is not base64 of "username:password"`,
      );
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username !== undefined && entry.password !== undefined) {
    return { username: entry.username, password: entry.password };
  }
  return null;
}

async function fromHelper(
  helper: string,
  where: string,
  registry: string,
  env: NodeJS.ProcessEnv,
  helperRunner: HelperRunner,
): Promise<FoundCredentials> {
  const program = `docker-credential-${helper}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(helper)) {
    throw new BerthError(
      'BERTH_CREDENTIAL_HELPER_FAILED',
      `${where} names credential helper ${JSON.stringify(helper)}, which is not a helper name`,
    );
  }
  const result = await helperRunner(helper, registryServerUrl(registry), env);
  if (result.missing) {
    throw new BerthError(
      'BERTH_CREDENTIAL_HELPER_MISSING',
      `credential helper ${program} (from ${where}) for registry ${registry} is not on PATH`,
      {
        hint: `Install ${program} on this machine and put it on berth's PATH, or remove the helper from the Docker config. berth does not fall back to other credentials.`,
      },
    );
  }
  if (result.code !== 0) {
    // The helper's normal answer for a registry it holds nothing for: no credentials, not a failure.
    if (/credentials not found/i.test(result.stdout + result.stderr)) {
      return {
        credentials: null,
        source: `${program} (from ${where}) has no credentials for ${registry}`,
      };
    }
    const said = firstLine(result.stderr || result.stdout);
    throw new BerthError(
      'BERTH_CREDENTIAL_HELPER_FAILED',
      `credential helper ${program} (from ${where}) failed for registry ${registry} with exit code ${result.code ?? 'none'}${said ? `: ${said}` : ''}`,
    );
  }
  let answer: { Username?: unknown; Secret?: unknown };
  try {
    answer = JSON.parse(result.stdout) as { Username?: unknown; Secret?: unknown };
  } catch {
    throw new BerthError(
      'BERTH_CREDENTIAL_HELPER_FAILED',
      `credential helper ${program} (from ${where}) answered something that is not JSON for registry ${registry}`,
      {
        hint: `Check the helper by hand: echo ${registryServerUrl(registry)} | ${program} get`,
      },
    );
  }
  if (
    typeof answer.Username !== 'string' ||
    typeof answer.Secret !== 'string' ||
    answer.Secret === ''
  ) {
    throw new BerthError(
      'BERTH_CREDENTIAL_HELPER_FAILED',
      `credential helper ${program} (from ${where}) answered without a Username and Secret for registry ${registry}`,
      {
        hint: `Check the helper by hand: echo ${registryServerUrl(registry)} | ${program} get`,
      },
    );
  }
  const credentials: RegistryCredentials =
    answer.Username === '<token>'
      ? { identityToken: answer.Secret }
      : { username: answer.Username, password: answer.Secret };
  return { credentials, source: `${program} (from ${where})` };
}

function firstLine(text: string): string {
  // Only the first line, cut short: enough to diagnose, too little to carry a secret block.
  return (text.trim().split('\n')[0] ?? '').slice(0, 200);
}
